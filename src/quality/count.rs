//! Confident learning, counting (Northcutt et al. 2021; cleanlab's `count`):
//! per-class thresholds, the confident joint, its calibration, and the
//! estimated joint distribution of given and true labels with the noise
//! rates it implies. Probabilities are out-of-sample, `[n, k]` row-major.
//! Ported by hand because no Rust crate implements confident learning; the
//! steps and tie-breaking follow cleanlab 2 so that results agree with it.

use crate::stats::argmax;

/// Per-class thresholds: the mean probability of class j over the images
/// whose given label is j (the expected self-confidence of class j); a class
/// no image carries gets infinity, so that no image is confidently of it
/// (cleanlab's mean of nothing is NaN, which no probability reaches either).
pub fn thresholds(labels: &[u32], probs: &[f32], k: usize) -> Vec<f64> {
    weighted_thresholds(labels, probs, k, None)
}

/// How often a bootstrap resample drew each row (`None`: every row once).
/// Counting a row as often as it was drawn gives the resample's figures
/// without copying its rows.
type Weights<'a> = Option<&'a [u32]>;

fn weight(w: Weights, i: usize) -> f64 {
    w.map_or(1.0, |w| w[i] as f64)
}

fn weighted_thresholds(labels: &[u32], probs: &[f32], k: usize, w: Weights) -> Vec<f64> {
    let mut sum = vec![0f64; k];
    let mut count = vec![0f64; k];
    for (i, (row, &l)) in probs.chunks_exact(k).zip(labels).enumerate() {
        let wi = weight(w, i);
        if wi > 0.0 {
            sum[l as usize] += row[l as usize] as f64 * wi;
            count[l as usize] += wi;
        }
    }
    sum.iter().zip(&count).map(|(s, &c)| if c > 0.0 { s / c } else { f64::INFINITY }).collect()
}

/// The class confidently predicted for one row, if any: among classes whose
/// probability reaches their threshold, the row's arg-max when there are
/// several, else the single one (cleanlab's rule).
pub fn confident_class(row: &[f32], thresholds: &[f64]) -> Option<usize> {
    let mut confident = (0..row.len()).filter(|&j| row[j] as f64 >= thresholds[j] - 1e-6);
    match (confident.next(), confident.next()) {
        (None, _) => None,
        (Some(j), None) => Some(j),
        _ => Some(argmax(row)),
    }
}

/// A `k x k` count matrix, `m[given][true]`.
pub type Matrix = Vec<Vec<f64>>;

/// The confident joint `C[given][true]`: images counted by their given label
/// and confidently predicted class, with at least 1 on the diagonal.
pub fn confident_joint(labels: &[u32], probs: &[f32], k: usize, thresholds: &[f64]) -> Matrix {
    weighted_confident_joint(labels, probs, k, thresholds, None)
}

fn weighted_confident_joint(labels: &[u32], probs: &[f32], k: usize, thresholds: &[f64], w: Weights) -> Matrix {
    let mut c = vec![vec![0f64; k]; k];
    for (i, (row, &l)) in probs.chunks_exact(k).zip(labels).enumerate() {
        let wi = weight(w, i);
        if wi == 0.0 {
            continue;
        }
        if let Some(j) = confident_class(row, thresholds) {
            c[l as usize][j] += wi;
        }
    }
    for (i, row) in c.iter_mut().enumerate() {
        row[i] = row[i].max(1.0);
    }
    c
}

/// Rounds values to integers keeping their (rounded) sum, moving the values
/// with the largest rounding loss first (cleanlab's `round_preserving_sum`;
/// numpy rounds halves to even, so does this).
pub fn round_preserving_sum(values: &[f64]) -> Vec<f64> {
    let mut ints: Vec<f64> = values.iter().map(|v| v.round_ties_even()).collect();
    let orig_sum = values.iter().sum::<f64>().round_ties_even();
    let mut int_sum = ints.iter().sum::<f64>().round_ties_even();
    while (int_sum - orig_sum).abs() > 1e-6 {
        let diff = (orig_sum - int_sum).round_ties_even();
        let increment = if diff < 0.0 { -1.0 } else { 1.0 };
        let changes = (diff.abs() as usize).min(values.len());
        // Largest (value - rounded) first; a stable sort reversed, as numpy's argsort()[::-1].
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| (values[a] - ints[a]).total_cmp(&(values[b] - ints[b])));
        order.reverse();
        for &i in order.iter().take(changes) {
            ints[i] += increment;
        }
        int_sum = ints.iter().sum::<f64>().round_ties_even();
    }
    ints
}

/// Each row of `c` scaled to sum to the number of images with that given label.
fn rows_to_label_counts(c: &Matrix, labels: &[u32], w: Weights) -> Matrix {
    let mut label_counts = vec![0f64; c.len()];
    for (i, &l) in labels.iter().enumerate() {
        label_counts[l as usize] += weight(w, i);
    }
    c.iter()
        .enumerate()
        .map(|(i, row)| {
            let s: f64 = row.iter().sum::<f64>().max(1e-16);
            row.iter().map(|v| v / s * label_counts[i]).collect()
        })
        .collect()
}

/// Calibrates the confident joint so that each row sums to the number of
/// images with that given label and the whole to the number of images.
pub fn calibrate(c: &Matrix, labels: &[u32]) -> Matrix {
    weighted_calibrate(c, labels, None)
}

fn weighted_calibrate(c: &Matrix, labels: &[u32], w: Weights) -> Matrix {
    let mut m = rows_to_label_counts(c, labels, w);
    let total: f64 = m.iter().flatten().sum::<f64>().max(1e-16);
    // A resample draws as many rows as there are: its weights sum to n.
    let n = labels.len() as f64;
    for row in &mut m {
        for v in row.iter_mut() {
            *v = *v / total * n;
        }
    }
    m.iter().map(|row| round_preserving_sum(row)).collect()
}

/// What counting estimates about the label noise.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NoiseEstimate {
    /// Per-class thresholds.
    pub thresholds: Vec<f64>,
    /// Calibrated confident joint, `[given][true]` counts.
    pub confident_joint: Matrix,
    /// Estimated joint distribution p(given, true) (sums to 1).
    pub joint: Matrix,
    /// p(given = i | true = j), `[given][true]`: the noise matrix.
    pub noise_matrix: Matrix,
    /// Per given class: the estimated share of its images whose true class is another.
    pub noise_rate: Vec<f64>,
}

/// Counts: thresholds, calibrated confident joint, joint, noise matrix and rates.
pub fn estimate(labels: &[u32], probs: &[f32], k: usize) -> NoiseEstimate {
    weighted_estimate(labels, probs, k, None)
}

fn weighted_estimate(labels: &[u32], probs: &[f32], k: usize, w: Weights) -> NoiseEstimate {
    let t = weighted_thresholds(labels, probs, k, w);
    let cj = weighted_calibrate(&weighted_confident_joint(labels, probs, k, &t, w), labels, w);
    let total: f64 = cj.iter().flatten().sum::<f64>().max(1e-16);
    let joint: Matrix = cj.iter().map(|r| r.iter().map(|v| v / total).collect()).collect();
    let col_sums: Vec<f64> = (0..k).map(|j| (0..k).map(|i| joint[i][j]).sum()).collect();
    let noise_matrix: Matrix = (0..k)
        .map(|i| (0..k).map(|j| if col_sums[j] > 0.0 { joint[i][j] / col_sums[j] } else { 0.0 }).collect())
        .collect();
    let noise_rate = (0..k)
        .map(|i| {
            let s: f64 = joint[i].iter().sum();
            if s > 0.0 {
                1.0 - joint[i][i] / s
            } else {
                0.0
            }
        })
        .collect();
    NoiseEstimate { thresholds: t, confident_joint: cj, joint, noise_matrix, noise_rate }
}

/// Pseudo-count added to every off-diagonal cell of the confident joint by
/// [`vote_noise_matrix`]: no confusion is ruled out because no image of it
/// was counted (on small classes most cells hold 0 to 2 images).
pub const NOISE_PSEUDO_COUNT: f64 = 1.0;

/// The noise matrix `T[given][true] = p(given | true)` of confident
/// learning's counting applied to the combined vote (`votes`: `[n, k]` rows
/// of the model's and neighbours' averaged shares): per-class thresholds and
/// confident joint on the votes, [`NOISE_PSEUDO_COUNT`] added to each
/// off-diagonal cell, rows scaled to the label counts (not rounded: the
/// matrix is a prior, not a count of images to remove). Columns of classes
/// without any image are zero.
pub fn vote_noise_matrix(labels: &[u32], votes: &[f32], k: usize) -> Matrix {
    noise_matrix_with(labels, votes, k, NOISE_PSEUDO_COUNT)
}

/// [`vote_noise_matrix`] with `pseudo` added to each off-diagonal cell
/// instead of [`NOISE_PSEUDO_COUNT`] (0: the matrix as counted).
pub fn noise_matrix_with(labels: &[u32], votes: &[f32], k: usize, pseudo: f64) -> Matrix {
    let t = thresholds(labels, votes, k);
    let mut c = confident_joint(labels, votes, k, &t);
    for (g, row) in c.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            if j != g {
                *v += pseudo;
            }
        }
    }
    let c = rows_to_label_counts(&c, labels, None);
    let col: Vec<f64> = (0..k).map(|j| (0..k).map(|g| c[g][j]).sum()).collect();
    (0..k).map(|g| (0..k).map(|j| if col[j] > 0.0 { c[g][j] / col[j] } else { 0.0 }).collect()).collect()
}

/// A percentile bootstrap 95% interval of each class's noise rate: the
/// estimate on `resamples` seeded resamples (with replacement) of the rows,
/// 2.5% and 97.5% quantiles per class (None for a class absent from every
/// resample). Returns (low ends, high ends).
pub fn noise_rate_interval(
    labels: &[u32],
    probs: &[f32],
    k: usize,
    resamples: usize,
    seed: u64,
) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    use rayon::prelude::*;
    let n = labels.len();
    let rounds = if n == 0 { 0 } else { resamples };
    // Each resample from its own stream of the seed (seed::resample), on any
    // thread: the same intervals whatever the number of threads.
    let estimates: Vec<(Vec<bool>, NoiseEstimate)> = (0..rounds)
        .into_par_iter()
        .map(|r| {
            let drawn = crate::stats::bootstrap_counts(&mut crate::seed::resample(seed, r as u64), n);
            let mut present = vec![false; k];
            for (&l, _) in labels.iter().zip(&drawn).filter(|(_, &d)| d > 0) {
                present[l as usize] = true;
            }
            (present, weighted_estimate(labels, probs, k, Some(&drawn)))
        })
        .collect();
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); k];
    for (present, est) in estimates {
        for c in (0..k).filter(|&c| present[c]) {
            draws[c].push(est.noise_rate[c]);
        }
    }
    draws.iter_mut().map(|d| crate::stats::percentile_interval(d).unzip()).unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six images, three classes; probabilities chosen so that every step
    /// can be followed by hand.
    fn case() -> (Vec<u32>, Vec<f32>) {
        let labels = vec![0, 0, 1, 1, 2, 2];
        #[rustfmt::skip]
        let probs = vec![
            0.8, 0.1, 0.1,
            0.2, 0.7, 0.1, // given 0, confidently 1
            0.1, 0.8, 0.1,
            0.1, 0.6, 0.3,
            0.1, 0.1, 0.8,
            0.3, 0.1, 0.6,
        ];
        (labels, probs)
    }

    #[test]
    fn thresholds_are_mean_self_confidence_per_class() {
        let (l, p) = case();
        let t = thresholds(&l, &p, 3);
        let want = [0.5, 0.7, 0.7];
        for (a, b) in t.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{t:?}");
        }
    }

    #[test]
    fn the_confident_joint_counts_confident_predictions_by_given_label() {
        let (l, p) = case();
        let t = thresholds(&l, &p, 3);
        // Row 1 (given 0): only class 1 reaches its threshold 0.7 -> C[0][1].
        // Row 3 (given 1): 0.6 < 0.7 and 0.3 < 0.7, 0.1 < 0.5: not counted.
        // Row 5 (given 2): 0.6 < 0.7, 0.3 < 0.5: not counted.
        let c = confident_joint(&l, &p, 3, &t);
        assert_eq!(c, vec![vec![1.0, 1.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]]);
        // Calibrated: rows scaled to label counts (2, 2, 2), total 6.
        assert_eq!(calibrate(&c, &l), vec![vec![1.0, 1.0, 0.0], vec![0.0, 2.0, 0.0], vec![0.0, 0.0, 2.0]]);
        let e = estimate(&l, &p, 3);
        assert!((e.noise_rate[0] - 0.5).abs() < 1e-12 && e.noise_rate[1] == 0.0);
        // p(given 0 | true 1) = (1/6) / (3/6).
        assert!((e.noise_matrix[0][1] - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn rounding_preserves_the_sum_like_numpy() {
        // Halves round to even (0, 2, 2, 0 = 4); the missing 1 goes to the last of
        // the largest losses, as numpy's reversed stable argsort picks it.
        assert_eq!(round_preserving_sum(&[0.5, 1.5, 2.5, 0.5]), vec![0.0, 2.0, 2.0, 1.0]);
        assert_eq!(round_preserving_sum(&[1.4, 1.4, 1.2]), vec![1.0, 2.0, 1.0]);
        let v = [0.33, 0.33, 0.34, 2.0];
        assert_eq!(round_preserving_sum(&v).iter().sum::<f64>(), 3.0);
    }

    #[test]
    fn the_noise_rate_interval_holds_the_planted_rate_and_is_seeded() {
        // 300 images per class of 3; 60 of class 0's labels (20%) belong to
        // class 1, and the model is sure of every image's true class.
        let (mut labels, mut probs) = (Vec::new(), Vec::new());
        for c in 0..3u32 {
            for i in 0..300 {
                let truth = if c == 0 && i < 60 { 1 } else { c as usize };
                labels.push(c);
                probs.extend((0..3).map(|j| if j == truth { 0.9f32 } else { 0.05 }));
            }
        }
        let est = estimate(&labels, &probs, 3);
        assert!((est.noise_rate[0] - 0.2).abs() < 1e-9, "{:?}", est.noise_rate);
        let (lo, hi) = noise_rate_interval(&labels, &probs, 3, 200, 9);
        let (lo0, hi0) = (lo[0].unwrap(), hi[0].unwrap());
        assert!(lo0 < 0.2 && 0.2 < hi0 && hi0 - lo0 < 0.15, "{lo0} {hi0}");
        assert_eq!((lo[2], hi[2]), (Some(0.0), Some(0.0)));
        assert_eq!(noise_rate_interval(&labels, &probs, 3, 200, 9), (lo, hi));
    }
}
