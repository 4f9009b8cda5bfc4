//! Confident learning, filtering (cleanlab's `filter.find_label_issues`):
//! which images to flag as label issues, given the calibrated confident
//! joint. `PruneByNoiseRate` removes, for every (given i, true j) cell, the
//! `C[i][j]` images of given label i with the largest margin `p_j - p_i`;
//! `PruneByClass` removes, per given class, the `n_i - C[i][i]` images with
//! the lowest self-confidence; `Both` keeps images flagged by both. Images
//! whose prediction equals their label are never flagged.

use serde::{Deserialize, Serialize};

use super::count::{round_preserving_sum, Matrix};
use crate::stats::argmax;

/// How label issues are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneMethod {
    PruneByNoiseRate,
    PruneByClass,
    Both,
}

impl PruneMethod {
    /// Parses `noise_rate`, `class` or `both`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "noise_rate" | "prune_by_noise_rate" => Some(PruneMethod::PruneByNoiseRate),
            "class" | "prune_by_class" => Some(PruneMethod::PruneByClass),
            "both" => Some(PruneMethod::Both),
            _ => None,
        }
    }
}

/// cleanlab's `_keep_at_least_n_per_class` on the transposed joint
/// (`m[true][given]`): keeps at least `n` on the diagonal, taking the
/// difference evenly from the column's non-zero off-diagonal cells.
fn keep_at_least_n_per_class(m: &Matrix, n: f64) -> Matrix {
    let k = m.len();
    let mut out = m.clone();
    for col in 0..k {
        let diag = m[col][col];
        let new_diag = diag.max(n);
        let diff = new_diag - diag;
        let nonzero = (0..k).filter(|&r| m[r][col] != 0.0).count() as f64;
        let per = diff / (nonzero - 1.0).max(1.0);
        for r in 0..k {
            out[r][col] = (m[r][col] - per).max(0.0);
        }
        out[col][col] = new_diag;
    }
    out.iter().map(|row| round_preserving_sum(row)).collect()
}

/// Indices of the `count` largest values among `candidates` (by `score`),
/// ties to the later index; a selection, not a sort (linear time).
fn top(candidates: &[usize], count: usize, score: impl Fn(usize) -> f64) -> Vec<usize> {
    let mut c: Vec<(f64, usize)> = candidates.iter().map(|&i| (score(i), i)).collect();
    let cut = c.len().saturating_sub(count);
    if cut == 0 {
        return candidates.to_vec();
    }
    c.select_nth_unstable_by(cut, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    c[cut..].iter().map(|&(_, i)| i).collect()
}

/// Flags label issues among the images (`labels`, out-of-sample `probs`)
/// given the calibrated confident joint `cj[given][true]`.
pub fn find_label_issues(labels: &[u32], probs: &[f32], k: usize, cj: &Matrix, method: PruneMethod) -> Vec<bool> {
    let n = labels.len();
    let by_label: Vec<Vec<usize>> = (0..k).map(|c| (0..n).filter(|&i| labels[i] as usize == c).collect()).collect();
    let p = |i: usize, j: usize| probs[i * k + j] as f64;
    let transposed: Matrix = (0..k).map(|t| (0..k).map(|g| cj[g][t]).collect()).collect();
    let prune = keep_at_least_n_per_class(&transposed, 1.0);
    let mut by_noise = vec![false; n];
    let mut by_class = vec![false; n];
    if method != PruneMethod::PruneByClass {
        for given in 0..k {
            for truth in 0..k {
                let count = prune[truth][given] as usize;
                if truth != given && count > 0 {
                    for i in top(&by_label[given], count, |i| p(i, truth) - p(i, given)) {
                        by_noise[i] = true;
                    }
                }
            }
        }
    }
    if method != PruneMethod::PruneByNoiseRate {
        for given in 0..k {
            let rows = &by_label[given];
            if rows.len() > 1 {
                let issues = (rows.len() as f64 - prune[given][given]).max(0.0) as usize;
                let mut s: Vec<f64> = rows.iter().map(|&i| p(i, given)).collect();
                s.sort_by(f64::total_cmp);
                if let Some(&cut) = s.get(issues) {
                    for &i in rows {
                        if p(i, given) < cut {
                            by_class[i] = true;
                        }
                    }
                }
            }
        }
    }
    (0..n)
        .map(|i| {
            let flagged = match method {
                PruneMethod::PruneByNoiseRate => by_noise[i],
                PruneMethod::PruneByClass => by_class[i],
                PruneMethod::Both => by_noise[i] && by_class[i],
            };
            flagged && argmax(&probs[i * k..(i + 1) * k]) != labels[i] as usize
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::count;
    use super::*;

    #[test]
    fn the_confidently_mislabeled_image_is_found_by_every_method() {
        let labels = vec![0, 0, 0, 1, 1, 1];
        #[rustfmt::skip]
        let probs = vec![
            0.9, 0.1,
            0.8, 0.2,
            0.1, 0.9, // given 0, clearly 1
            0.2, 0.8,
            0.3, 0.7, // below class 1's threshold, so uncounted; flagged by class, kept as predicted right
            0.2, 0.8,
        ];
        let e = count::estimate(&labels, &probs, 2);
        for m in [PruneMethod::PruneByNoiseRate, PruneMethod::PruneByClass, PruneMethod::Both] {
            let issues = find_label_issues(&labels, &probs, 2, &e.confident_joint, m);
            assert_eq!(issues, vec![false, false, true, false, false, false], "{m:?}");
        }
    }

    #[test]
    fn keeping_one_per_class_moves_counts_from_off_diagonal_cells() {
        let m = vec![vec![0.0, 2.0], vec![4.0, 3.0]];
        assert_eq!(keep_at_least_n_per_class(&m, 1.0), vec![vec![1.0, 2.0], vec![3.0, 3.0]]);
    }
}
