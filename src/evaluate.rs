//! Evaluation on the test split: accuracy, per-class miss rate with a 95%
//! Wilson score interval, and the confusion matrix.

use serde::{Deserialize, Serialize};

use crate::stats::{argmax, wilson, Z95};

/// One class's test results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassResult {
    /// Class index.
    pub class: u32,
    /// Test images of the class.
    pub images: usize,
    /// Of those, predicted as another class.
    pub misses: usize,
    /// misses / images.
    pub miss_rate: f64,
    /// 95% Wilson interval of the miss rate.
    pub miss_rate_low: f64,
    pub miss_rate_high: f64,
}

/// Test-split results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Share of test images predicted as their label.
    pub accuracy: f64,
    /// Per class, in label order.
    pub classes: Vec<ClassResult>,
    /// `confusion[given][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

/// Evaluates predictions against labels for `k` classes.
pub fn evaluate(labels: &[u32], predicted: &[u32], k: usize) -> Evaluation {
    let mut confusion = vec![vec![0usize; k]; k];
    for (&l, &p) in labels.iter().zip(predicted) {
        confusion[l as usize][p as usize] += 1;
    }
    let classes = (0..k)
        .map(|c| {
            let images: usize = confusion[c].iter().sum();
            let misses = images - confusion[c][c];
            let (lo, hi) = wilson(misses, images, Z95);
            ClassResult {
                class: c as u32,
                images,
                misses,
                miss_rate: if images > 0 { misses as f64 / images as f64 } else { 0.0 },
                miss_rate_low: lo,
                miss_rate_high: hi,
            }
        })
        .collect();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    Evaluation { accuracy: correct as f64 / labels.len().max(1) as f64, classes, confusion }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_counts_misses_and_confusion() {
        let e = evaluate(&[0, 0, 1, 1, 1, 2], &[0, 1, 1, 1, 0, 2], 3);
        assert_eq!(e.confusion, vec![vec![1, 1, 0], vec![1, 2, 0], vec![0, 0, 1]]);
        assert_eq!((e.classes[0].misses, e.classes[1].misses, e.classes[2].misses), (1, 1, 0));
        assert!((e.accuracy - 4.0 / 6.0).abs() < 1e-12);
    }
}

/// What a model says about each image, from its logits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleOutputs {
    /// Number of classes.
    pub classes: usize,
    /// `[n, classes]` softmax probabilities, row-major.
    pub probs: Vec<f32>,
    /// Arg-max class.
    pub pred: Vec<u32>,
    /// Cross-entropy of the given label, `-ln p[label]`.
    pub loss: Vec<f32>,
    /// Probability of the given label (self-confidence).
    pub self_confidence: Vec<f32>,
    /// `p[label]` minus the largest other probability (negative: the model prefers another class).
    pub margin: Vec<f32>,
}

/// Softmax and per-image scores of `[n, k]` logits against `labels`.
pub fn sample_outputs(logits: &[f32], k: usize, labels: &[u32]) -> SampleOutputs {
    let mut out = SampleOutputs { classes: k, ..Default::default() };
    for (row, &label) in logits.chunks_exact(k).zip(labels) {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        let p: Vec<f64> = exps.iter().map(|e| e / sum).collect();
        let l = label as usize;
        let pred = argmax(&p);
        let other = (0..k).filter(|&c| c != l).map(|c| p[c]).fold(0.0, f64::max);
        out.probs.extend(p.iter().map(|&v| v as f32));
        out.pred.push(pred as u32);
        out.loss.push((sum.ln() + max - row[l] as f64) as f32);
        out.self_confidence.push(p[l] as f32);
        out.margin.push((p[l] - other) as f32);
    }
    out
}
