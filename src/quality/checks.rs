//! Scoring the scores: precision, recall and F1 of a flag, and AUROC of a
//! continuous score, against a known set of bad images (planted or injected).

use serde::{Deserialize, Serialize};

/// How one flag or score fares against the truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked (`likely_mislabeled`, `issue_score`, ...).
    pub name: String,
    /// What the truth is (`label_flip`, `duplicate`, `outlier`).
    pub target: String,
    /// For flags: precision, recall, F1 and the number flagged.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub flagged: Option<usize>,
    /// For scores: area under the ROC curve (higher score = more likely bad).
    pub auroc: Option<f64>,
    /// Images known bad, and images checked.
    pub positives: usize,
    pub images: usize,
}

/// Precision, recall and F1 of `flag` against `truth`.
pub fn flag_check(name: &str, target: &str, flag: &[bool], truth: &[bool]) -> Check {
    let tp = flag.iter().zip(truth).filter(|(f, t)| **f && **t).count() as f64;
    let flagged = flag.iter().filter(|f| **f).count();
    let positives = truth.iter().filter(|t| **t).count();
    let precision = if flagged > 0 { tp / flagged as f64 } else { 0.0 };
    let recall = if positives > 0 { tp / positives as f64 } else { 0.0 };
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    Check {
        name: name.into(),
        target: target.into(),
        precision: Some(precision),
        recall: Some(recall),
        f1: Some(f1),
        flagged: Some(flagged),
        auroc: None,
        positives,
        images: truth.len(),
    }
}

/// AUROC check of a score.
pub fn score_check(name: &str, target: &str, score: &[f64], truth: &[bool]) -> Check {
    Check {
        name: name.into(),
        target: target.into(),
        precision: None,
        recall: None,
        f1: None,
        flagged: None,
        auroc: Some(crate::stats::auroc(score, truth)),
        positives: truth.iter().filter(|t| **t).count(),
        images: truth.len(),
    }
}

/// Average precision of a score (higher = more likely bad) against the
/// truth, as scikit-learn's `average_precision_score`: the precision at each
/// distinct score, taken from the highest down, weighted by the recall it
/// adds (tied scores enter together). 0 without positives.
pub fn average_precision(score: &[f64], truth: &[bool]) -> f64 {
    let positives = truth.iter().filter(|t| **t).count() as f64;
    if positives == 0.0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    for (n, &i) in order.iter().enumerate() {
        seen += 1.0;
        if truth[i] {
            tp += 1.0;
        }
        // At the end of a run of tied scores.
        if order.get(n + 1).is_none_or(|&j| score[j] != score[i]) {
            let recall = tp / positives;
            ap += (recall - last_recall) * tp / seen;
            last_recall = recall;
        }
    }
    ap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::auroc;

    #[test]
    fn average_precision_matches_scikit_learn() {
        // sklearn.metrics.average_precision_score([1, 0, 1, 0, 0], [0.9, 0.8, 0.4, 0.3, 0.1]) = 0.8333...
        let t = [true, false, true, false, false];
        assert!((average_precision(&[0.9, 0.8, 0.4, 0.3, 0.1], &t) - 5.0 / 6.0).abs() < 1e-12);
        // Ties enter together: ([1, 0, 1], [0.5, 0.5, 0.1]) = 0.5 * 0.5 + 0.5 * (2/3) = 0.5833...
        let ap = average_precision(&[0.5, 0.5, 0.1], &[true, false, true]);
        assert!((ap - (0.25 + 1.0 / 3.0)).abs() < 1e-12, "{ap}");
        assert_eq!(average_precision(&[0.5], &[false]), 0.0);
    }

    #[test]
    fn auroc_and_flag_metrics_match_hand_counts() {
        // Positives at scores 0.9 and 0.4; negatives at 0.8, 0.3, 0.1: 5 of 6 pairs ordered.
        let s = [0.9, 0.8, 0.4, 0.3, 0.1];
        let t = [true, false, true, false, false];
        assert!((auroc(&s, &t) - 5.0 / 6.0).abs() < 1e-12);
        // Ties count half.
        assert!((auroc(&[0.5, 0.5], &[true, false]) - 0.5).abs() < 1e-12);
        let c = flag_check("f", "x", &[true, true, false, false], &[true, false, true, false]);
        assert_eq!((c.precision, c.recall, c.flagged), (Some(0.5), Some(0.5), Some(2)));
    }
}
