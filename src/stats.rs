//! The small statistics, one place each: arg-max and arg-min, softmax, median,
//! mid-ranks (and the runs of ties under them), bootstrap draw counts, Spearman's and Pearson's correlations, quantiles, the Wilson score interval and the
//! AUROC. Written here rather than taken from a crate: the statistics crates
//! offer distributions and descriptive summaries, not the Wilson interval or
//! a tie-aware AUROC, and each of these is a dozen lines whose exact tie and
//! rounding behaviour the tables' byte-identity depends on.

/// A float type the functions here take (f32 or f64).
pub trait Real: Copy + PartialOrd + std::ops::Add<Output = Self> + std::ops::Div<Output = Self> {
    /// The number two.
    const TWO: Self;
    /// IEEE total order (`f32::total_cmp`).
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering;
}

impl Real for f32 {
    const TWO: Self = 2.0;
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        f32::total_cmp(self, other)
    }
}

impl Real for f64 {
    const TWO: Self = 2.0;
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        f64::total_cmp(self, other)
    }
}

/// Index of the largest value (the first on ties; 0 for an empty row).
pub fn argmax<T: PartialOrd>(row: &[T]) -> usize {
    let mut best = 0;
    for (j, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = j;
        }
    }
    best
}

/// Softmax of a row of logits, in f64 (shifted by the row's maximum).
pub fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Index of the smallest value (the first on ties; 0 for an empty row).
pub fn argmin<T: PartialOrd>(row: &[T]) -> usize {
    let mut best = 0;
    for (j, v) in row.iter().enumerate() {
        if *v < row[best] {
            best = j;
        }
    }
    best
}

/// Median of `values` (the mean of the middle two for an even count; None
/// when empty). Sorts a copy in IEEE total order.
pub fn median<T: Real>(values: &[T]) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_by(T::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / T::TWO),
    }
}

/// The rows of `v` in increasing order (IEEE total order), and that order cut
/// into runs of equal values (`order[run]` are the rows of one value).
pub fn tie_runs(v: &[f64]) -> (Vec<usize>, Vec<std::ops::Range<usize>>) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=order.len() {
        if i == order.len() || v[order[i]] != v[order[start]] {
            runs.push(start..i);
            start = i;
        }
    }
    (order, runs)
}

/// 1-based ranks of `v` with ties given the mean of their ranks (mid-ranks).
pub fn mid_ranks(v: &[f64]) -> Vec<f64> {
    let (order, runs) = tie_runs(v);
    ranks_of_runs(&order, &runs)
}

/// Mid-ranks from [`tie_runs`]'s order and runs.
pub fn ranks_of_runs(order: &[usize], runs: &[std::ops::Range<usize>]) -> Vec<f64> {
    let mut r = vec![0.0; order.len()];
    for run in runs {
        let rank = (run.start + run.end - 1) as f64 / 2.0 + 1.0;
        for &o in &order[run.clone()] {
            r[o] = rank;
        }
    }
    r
}

/// How often each of `n` rows is drawn by one bootstrap resample (`n` draws
/// with replacement from `rng`): a resample's statistic can weigh each row
/// by its count instead of copying the rows.
pub fn bootstrap_counts(rng: &mut impl rand::Rng, n: usize) -> Vec<u32> {
    let mut drawn = vec![0u32; n];
    for _ in 0..n {
        drawn[rng.random_range(0..n)] += 1;
    }
    drawn
}

/// Spearman's rank correlation: Pearson's correlation of the mid-ranks.
/// None when the sides differ in length, are shorter than 3, or either is
/// constant.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    pearson(&mid_ranks(a), &mid_ranks(b))
}

/// Pearson's correlation. None when the sides differ in length, are
/// shorter than 3, or either is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| (cov / (va * vb).sqrt()).clamp(-1.0, 1.0))
}

/// The `q` quantile (0 to 1) of values sorted ascending, interpolating
/// linearly between the two nearest ranks (NumPy's default); None when empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = q.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// The percentile 95% interval of bootstrap `draws`: their 2.5% and 97.5%
/// quantiles (None when there are none). Sorts the draws.
pub fn percentile_interval(draws: &mut [f64]) -> Option<(f64, f64)> {
    draws.sort_by(f64::total_cmp);
    quantile(draws, 0.025).zip(quantile(draws, 0.975))
}

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of a proportion `k / n`. Returns (low, high);
/// (0, 1) for n = 0.
pub fn wilson(k: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Area under the ROC curve of `score` for `truth` (higher score = more
/// likely true), by the rank-sum (Mann-Whitney) formula with mid-ranks for
/// ties; 0.5 when either class is empty.
pub fn auroc(score: &[f64], truth: &[bool]) -> f64 {
    let ranks = mid_ranks(score);
    let pos = truth.iter().filter(|t| **t).count() as f64;
    let neg = score.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return 0.5;
    }
    let rank_sum: f64 = ranks.iter().zip(truth).filter(|(_, t)| **t).map(|(r, _)| r).sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_and_argmin_take_the_first_on_ties() {
        assert_eq!(argmax(&[1.0f32, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmin(&[2.0f64, 1.0, 1.0, 5.0]), 1);
        assert_eq!(argmax::<f32>(&[]), 0);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0f64, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0f32, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0f32, f32::INFINITY]), Some(f32::INFINITY));
        assert_eq!(median::<f64>(&[]), None);
    }

    #[test]
    fn spearman_matches_hand_computed_values() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]), Some(-1.0));
        // Ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5) = 0.9487.
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((r - 0.948_683).abs() < 1e-6, "{r}");
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn pearson_and_quantile_match_hand_computed_values() {
        // (1,2,3) against (1,2,4): cov 3, var 2 and 4.667: 3 / sqrt(9.333) = 0.98198.
        let r = pearson(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]).unwrap();
        assert!((r - 0.981_981).abs() < 1e-6, "{r}");
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0]), None);
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 0.875), Some(7.0));
        assert_eq!(quantile(&v, 1.0), Some(10.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn wilson_matches_hand_computed_values() {
        // 10 of 100: the textbook interval is 0.0552 .. 0.1744.
        let (lo, hi) = wilson(10, 100, Z95);
        assert!((lo - 0.05522).abs() < 1e-4 && (hi - 0.17436).abs() < 1e-4, "{lo} {hi}");
        let (lo, hi) = wilson(0, 20, Z95);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.16113).abs() < 1e-4, "{hi}");
    }

    #[test]
    fn auroc_counts_ties_as_half() {
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(auroc(&[0.5, 0.5], &[false, true]), 0.5);
        // One positive at 0.4 above one of two negatives: 0.5.
        assert_eq!(auroc(&[0.3, 0.4, 0.6], &[false, true, false]), 0.5);
        assert_eq!(auroc(&[0.3, 0.4], &[true, true]), 0.5);
    }
}
