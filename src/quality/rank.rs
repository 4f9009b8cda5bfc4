//! Confident learning, ranking (cleanlab's `rank`): per-image label-quality
//! scores in [0, 1], low meaning the given label is likely wrong.

/// Scores are clipped below at this value before dividing (cleanlab's bound).
const CLIP: f64 = 1e-6;

/// Probability of the given label.
pub fn self_confidence(row: &[f32], label: usize) -> f64 {
    row[label] as f64
}

/// `(p[label] - max other p + 1) / 2`.
pub fn normalized_margin(row: &[f32], label: usize) -> f64 {
    let other = row.iter().enumerate().filter(|&(j, _)| j != label).map(|(_, &v)| v as f64).fold(0.0, f64::max);
    (row[label] as f64 - other + 1.0) / 2.0
}

/// Entropy of the row divided by ln k (0: certain, 1: uniform).
pub fn normalized_entropy(row: &[f32]) -> f64 {
    let k = row.len() as f64;
    -row.iter().map(|&p| (p as f64).max(CLIP)).map(|p| p * p.ln()).sum::<f64>() / k.ln()
}

/// Self-confidence weighted by entropy: `ln(1 + h/s) / max(h/s, clip)` with
/// `h` the normalised entropy and `s` the clipped self-confidence.
pub fn confidence_weighted_entropy(row: &[f32], label: usize) -> f64 {
    let s = self_confidence(row, label).max(CLIP);
    let q = normalized_entropy(row) / s;
    (q + 1.0).ln() / q.max(CLIP)
}

/// The probability that the given label is wrong, from a vote `r` over the
/// true class (`[k]`, summing to 1) and the noise matrix `t[given][true]`
/// (Bayes: `p(true = j | given, r)` is proportional to `r[j] t[given][j]`):
/// `1 - r[label] t[label][label] / sum_j r[j] t[label][j]`. With no
/// plausible class at all (every term 0) the label is not called wrong.
pub fn label_error_probability(r: &[f64], label: usize, t: &[Vec<f64>]) -> f64 {
    let row = &t[label];
    let total: f64 = r.iter().zip(row).map(|(a, b)| a * b).sum();
    if total > 0.0 {
        1.0 - r[label] * row[label] / total
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_their_definitions() {
        let row = [0.7f32, 0.2, 0.1];
        assert!((self_confidence(&row, 1) - 0.2).abs() < 1e-7);
        assert!((normalized_margin(&row, 1) - 0.25).abs() < 1e-7);
        assert!((normalized_margin(&row, 0) - 0.75).abs() < 1e-7);
        let h = -(0.7f64 * 0.7f64.ln() + 0.2 * 0.2f64.ln() + 0.1 * 0.1f64.ln()) / 3f64.ln();
        assert!((normalized_entropy(&row) - h).abs() < 1e-6);
        let q = h / 0.7;
        assert!((confidence_weighted_entropy(&row, 0) - (q + 1.0).ln() / q).abs() < 1e-6);
        // A confident correct label scores above a confident wrong one.
        assert!(confidence_weighted_entropy(&row, 0) > confidence_weighted_entropy(&row, 2));
    }

    #[test]
    fn the_label_error_probability_weighs_the_vote_by_the_noise_prior() {
        // Two classes; 10% of class 1's images carry label 0.
        let t = vec![vec![0.9, 0.1], vec![0.1, 0.9]];
        // The vote is 80% class 1: p(true 1 | given 0) = 0.8*0.1 / (0.2*0.9 + 0.8*0.1).
        let p = label_error_probability(&[0.2, 0.8], 0, &t);
        assert!((p - 0.08 / 0.26).abs() < 1e-12, "{p}");
        // The same vote under a noisier prior (40%) calls the label wrong.
        let t40 = vec![vec![0.6, 0.4], vec![0.4, 0.6]];
        assert!(label_error_probability(&[0.2, 0.8], 0, &t40) > 0.5);
        assert_eq!(label_error_probability(&[1.0, 0.0], 0, &t), 0.0);
    }
}
