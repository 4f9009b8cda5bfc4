//! The evaluate stage: the model on the test split (accuracy, per-class
//! miss rate with a 95% Wilson score interval, the confusion matrix) and
//! each image's probabilities, prediction, loss and margin; the tables it
//! owns: `confusion.parquet`, `classes.parquet`'s miss-rate columns, and
//! `run.json`'s `evaluation`.

use crate::run::columns::evaluate::{CLASS_CONFUSED, CLASS_MISSES, CONFUSION};
use serde::{Deserialize, Serialize};

use arrow::array::RecordBatch;

use crate::run::schema;
use crate::run::table::{Columns, TableBuilder};
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
    /// misses / images; None when the class has no test images (a rate over
    /// no images is unknown, not 0).
    pub miss_rate: Option<f64>,
    /// 95% Wilson interval of the miss rate (None likewise).
    pub miss_rate_low: Option<f64>,
    pub miss_rate_high: Option<f64>,
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

impl crate::run::Section for Evaluation {
    const KEY: &'static str = "evaluation";
}

impl Evaluation {
    /// Per-class miss rates, in label order (None: no test images).
    pub fn miss_rates(&self) -> Vec<Option<f64>> {
        self.classes.iter().map(|c| c.miss_rate).collect()
    }

    /// `classes.parquet`'s top-confused-with columns (ties: the lower class index).
    pub fn confused_columns(&self, classes: &[String]) -> Columns {
        let top: Vec<Option<(usize, f64, (f64, f64))>> = self
            .confusion
            .iter()
            .enumerate()
            .map(|(a, row)| {
                let total: usize = row.iter().sum();
                let (b, &n) = row
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| *b != a)
                    .max_by_key(|(b, n)| (**n, std::cmp::Reverse(*b)))?;
                (n > 0).then(|| (b, n as f64 / total as f64, wilson(n, total, Z95)))
            })
            .collect();
        TableBuilder::new(&CLASS_CONFUSED)
            .opt_i32("top_confused_with", top.iter().map(|t| t.map(|(b, ..)| b as i32)))
            .opt_utf8("top_confused_with_name", top.iter().map(|t| t.map(|(b, ..)| classes[b].as_str())))
            .opt_f64("top_confused_share", top.iter().map(|t| t.map(|(_, s, _)| s)))
            .opt_f64("top_confused_share_low", top.iter().map(|t| t.map(|(.., (lo, _))| lo)))
            .opt_f64("top_confused_share_high", top.iter().map(|t| t.map(|(.., (_, hi))| hi)))
            .finish()
    }

    /// `classes.parquet`'s miss-rate columns.
    pub fn class_columns(&self) -> Columns {
        let c = &self.classes;
        TableBuilder::new(&CLASS_MISSES)
            .i64("test_misses", c.iter().map(|r| r.misses as i64))
            .opt_f64("miss_rate", c.iter().map(|r| r.miss_rate))
            .opt_f64("miss_rate_low", c.iter().map(|r| r.miss_rate_low))
            .opt_f64("miss_rate_high", c.iter().map(|r| r.miss_rate_high))
            .finish()
    }

    /// `confusion.parquet`.
    pub fn confusion_table(&self, classes: &[String]) -> RecordBatch {
        let (k, confusion) = (classes.len(), &self.confusion);
        let rows = || (0..k).flat_map(move |g| (0..k).map(move |p| (g, p)));
        let totals: Vec<usize> = confusion.iter().map(|r| r.iter().sum()).collect();
        TableBuilder::new(&CONFUSION)
            .i32("given", rows().map(|(g, _)| g as i32))
            .utf8("given_name", rows().map(|(g, _)| classes[g].as_str()))
            .i32("predicted", rows().map(|(_, p)| p as i32))
            .utf8("predicted_name", rows().map(|(_, p)| classes[p].as_str()))
            .i64("count", rows().map(|(g, p)| confusion[g][p] as i64))
            .opt_f64("share", rows().map(|(g, p)| (totals[g] > 0).then(|| confusion[g][p] as f64 / totals[g] as f64)))
            .finish_table(&schema::CONFUSION)
    }
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
            let known = images > 0;
            ClassResult {
                class: c as u32,
                images,
                misses,
                miss_rate: known.then(|| misses as f64 / images as f64),
                miss_rate_low: known.then_some(lo),
                miss_rate_high: known.then_some(hi),
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

    #[test]
    fn a_class_without_test_images_has_no_miss_rate_rather_than_0() {
        use arrow::array::Array;
        let e = evaluate(&[0, 0, 2], &[0, 1, 2], 3);
        assert_eq!(e.classes[1].images, 0);
        assert_eq!(
            (e.classes[1].miss_rate, e.classes[1].miss_rate_low, e.classes[1].miss_rate_high),
            (None, None, None)
        );
        assert_eq!(e.classes[0].miss_rate, Some(0.5));
        assert_eq!(e.classes[2].miss_rate, Some(0.0));
        let table = e.confusion_table(&["a".into(), "b".into(), "c".into()]);
        let share = table.column_by_name("share").unwrap();
        // Rows 3..6 are the given class b's.
        assert!((3..6).all(|i| share.is_null(i)) && (0..3).chain(6..9).all(|i| !share.is_null(i)));
        let json = serde_json::to_value(&e.classes[1]).unwrap();
        assert!(json["miss_rate"].is_null(), "{json}");
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

/// Per-image scores of `[n, k]` probabilities that are given, not computed
/// here (a `misfit score` run's): the same columns as [`sample_outputs`],
/// the loss as `-ln p[label]`.
pub fn outputs_from_probs(probs: &[f32], k: usize, labels: &[u32]) -> SampleOutputs {
    let mut out = SampleOutputs { classes: k, probs: probs.to_vec(), ..Default::default() };
    for (p, &label) in probs.chunks_exact(k).zip(labels) {
        let l = label as usize;
        let other = (0..k).filter(|&c| c != l).map(|c| p[c]).fold(0.0, f32::max);
        out.pred.push(argmax(p) as u32);
        out.loss.push(-(p[l] as f64).ln() as f32);
        out.self_confidence.push(p[l]);
        out.margin.push(p[l] - other);
    }
    out
}

/// Softmax and per-image scores of `[n, k]` logits against `labels`.
pub fn sample_outputs(logits: &[f32], k: usize, labels: &[u32]) -> SampleOutputs {
    let mut out = SampleOutputs { classes: k, ..Default::default() };
    for (row, &label) in logits.chunks_exact(k).zip(labels) {
        let p = crate::stats::softmax(row);
        // Cross-entropy as log-sum-exp minus the label's logit (finite where p[l] underflows).
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
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

/// The evaluate stage: the model's predictions against the test labels.
pub struct Evaluate;

impl super::Stage for Evaluate {
    fn name(&self) -> &'static str {
        "evaluate"
    }

    fn run(
        &self,
        run: &super::RunState,
        _writer: &crate::run::RunWriter,
    ) -> crate::error::Result<Option<Box<dyn super::Made>>> {
        let s = &run.samples;
        let e = evaluate(s.test_labels, &run.outputs.pred[s.n_train()..], s.classes.len());
        Ok(Some(Box::new(e)))
    }
}

impl super::Made for Evaluation {
    fn class_columns(&self, run: &super::RunState) -> Vec<Columns> {
        vec![self.class_columns(), self.confused_columns(run.samples.classes)]
    }

    fn write(&self, run: &super::RunState, writer: &mut crate::run::RunWriter) -> crate::error::Result<()> {
        writer.write(&schema::CONFUSION, &self.confusion_table(run.samples.classes))
    }

    fn section(&self, manifest: &mut crate::run::RunManifest) {
        manifest.set(self);
    }
}
