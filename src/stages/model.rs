//! The model stage: train a ResNet with K-fold cross-validation (every
//! training image's probabilities from a model that never saw it, one final
//! model on all of them) or import a trained one; then the columns it owns:
//! `samples.parquet`'s model columns and AUM flag, `dynamics.parquet`, the
//! final model's `model.safetensors`, and the model section of `run.json`.

use crate::run::columns::model::{CLASS_CONFIDENCE, DYNAMICS, SAMPLE_AUM_FLAG, SAMPLE_MODEL};
use arrow::array::RecordBatch;
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::data::{Dataset, DatasetSpec, Split};
use crate::error::Result;
use crate::model::{self, checkpoint, ModelConfig, ResNet};
use crate::progress::{Overall, INFER_UNITS};
use crate::run::schema;
use crate::run::table::{Columns, TableBuilder};
use crate::stages::evaluate::SampleOutputs;
use crate::stages::Samples;
use crate::train::recipe::{self, ModelOptions, Recipe};
use crate::train::{cv, Dynamics, TrainConfig};

/// The trained (or imported) model's file in the run folder.
pub const MODEL_FILE: &str = "model.safetensors";

/// What the model stage produced.
pub struct ModelStage {
    pub model: ResNet,
    /// Train logits `[n_train, classes]`: out-of-sample when trained here, in-sample when imported.
    pub train_logits: Vec<f32>,
    /// Test logits `[n_test, classes]` of the final (or imported) model, or
    /// the fold models' ensemble (log of the mean probability).
    pub test_logits: Vec<f32>,
    /// Test logits of [`ModelStage::model`] itself (the attacks choose
    /// images it classifies correctly); the same as `test_logits` unless
    /// those are an ensemble.
    pub model_test_logits: Vec<f32>,
    /// [`ModelStage::model`]'s pooled features of both splits, `[n, feature_dim]`.
    pub train_features: Vec<f32>,
    pub test_features: Vec<f32>,
    /// Each fold model's own test logits `[n_test, classes]` (with the same
    /// test-time flips as the training images' out-of-sample ones), when the
    /// test split gets their ensemble; empty otherwise. The null of the
    /// held-out bound: predictions as strong as the training images' own.
    pub fold_test_logits: Vec<Vec<f32>>,
    /// Held-out fold of each training image (None for an imported model).
    pub fold: Option<Vec<u32>>,
    /// The final model's training dynamics.
    pub dynamics: Option<Dynamics>,
    pub aum_threshold: Option<cv::AumThreshold>,
    /// TracIn's snapshots of the models trained here that serve the later
    /// stages (empty for an imported model: its one checkpoint is `model`).
    pub traced: Vec<cv::TracedModel>,
    pub summary: ModelSummary,
}

/// `run.json`'s `model`: how the model was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// `trained`, or `imported PATH`.
    pub source: String,
    pub config: ModelConfig,
    /// The training recipe (trained models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// The built-in recipe followed (trained models; none: the demo's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<Recipe>,
    /// Which model predicts what, when it is not one final model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<String>,
    pub device: String,
    /// The last epoch of every training job (`fold 1/5`, ..., `final`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_epoch: Option<BTreeMap<String, LastEpoch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aum_threshold: Option<AumSummary>,
    /// What a reader must know of the probabilities (in-sample ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl crate::run::Section for ModelSummary {
    const KEY: &'static str = "model";
}

impl ModelSummary {
    /// Which model [`ModelStage::model`] is, in words: the final model, fold
    /// 1's model (a recipe without a final model) or the imported one.
    pub fn checkpoint_name(&self) -> String {
        if let Some(path) = self.source.strip_prefix("imported ") {
            return format!("the imported model ({path})");
        }
        if self.source != "trained" {
            return format!("the model ({})", self.source);
        }
        match self.predictions {
            Some(_) => "fold 1's model (no final model in this recipe; it trained on the other folds' images)".into(),
            None => "the final model (trained on every training image)".into(),
        }
    }
}

/// One training job's last epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastEpoch {
    pub epoch: usize,
    /// Mean training loss of the epoch.
    pub loss: f64,
    pub train_accuracy: f64,
    pub images_per_s: f64,
}

/// The AUM threshold run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AumSummary {
    /// The 99th percentile of the threshold samples' AUM.
    pub threshold: f32,
    pub threshold_samples: usize,
    /// Other training images below it.
    pub flagged: usize,
}

/// Trains (or imports) the model and predicts both splits. Training state
/// is saved per epoch under `state_dir`, and resumed from there.
pub fn run(
    ds: &Dataset,
    spec: &DatasetSpec,
    seed: u64,
    opts: &ModelOptions,
    device: &Device,
    state_dir: &Path,
    progress: bool,
    overall: Option<&Overall>,
) -> Result<ModelStage> {
    if let Some(path) = &opts.import {
        let import = checkpoint::ImportOptions { classes: Some(ds.classes.clone()), mean: opts.mean, std: opts.std };
        let (model, _) = checkpoint::load(path, &import, device)?;
        return from_model(ds, model, format!("imported {}", path.display()), device);
    }
    let (mcfg, t, plan) = recipe::setup(ds, spec, seed, opts, device.is_cuda())?;
    let folds = plan.folds;
    let out = cv::cross_validate(ds, &mcfg, &t, &plan, Some(state_dir), device, progress, overall)?;
    let (train_final, test) = predict_splits(&out.model, ds)?;
    let advance = |images: usize| {
        if let Some(o) = overall {
            o.advance(INFER_UNITS * images as f64);
        }
    };
    advance(ds.train.len() + ds.test.len());
    let mut fold_test_logits = Vec::new();
    let (test_logits, predictions) = if out.fold_models.is_empty() {
        (test.logits.clone(), None)
    } else {
        let (h, w) = (ds.height, ds.width);
        let mut members = Vec::new();
        for m in &out.fold_models {
            members.push(model::predict_tta(m, &ds.test.pixels, ds.test.len(), h, w, plan.flip_predictions)?.logits);
            advance(ds.test.len() * if plan.flip_predictions { 2 } else { 1 });
        }
        let refs: Vec<&[f32]> = members.iter().map(|m| m.as_slice()).collect();
        let flips = if plan.flip_predictions { ", each on the image and its mirror" } else { "" };
        let what = format!(
            "no final model: test probabilities are the mean of the {folds} fold models'{flips}; \
             training images' are their held-out fold's model's{}; embeddings, attacks, explanations \
             and model.safetensors are fold 1's model's; training dynamics of each image are from the \
             fold model after its own (one that trained on it)",
            if plan.flip_predictions { " (with the mirror too)" } else { "" }
        );
        let ensemble = model::ensemble_logits(&refs, ds.classes.len());
        fold_test_logits = members;
        (ensemble, Some(what))
    };
    let last_epoch = out
        .history
        .iter()
        .filter_map(|(job, epochs)| {
            epochs.last().map(|e| {
                let last = LastEpoch {
                    epoch: e.epoch,
                    loss: e.loss,
                    train_accuracy: e.accuracy,
                    images_per_s: e.images_per_s,
                };
                (job.clone(), last)
            })
        })
        .collect();
    let aum_threshold = out.aum_threshold.as_ref().map(|a| AumSummary {
        threshold: a.threshold,
        threshold_samples: a.is_threshold_sample.iter().filter(|x| **x).count(),
        flagged: (0..a.aum.len()).filter(|&i| a.flag(i) == Some(true)).count(),
    });
    let summary = ModelSummary {
        source: "trained".into(),
        config: mcfg,
        training: Some(t),
        folds: Some(folds),
        recipe: plan.recipe,
        predictions,
        device: model::device_name(device),
        last_epoch: Some(last_epoch),
        aum_threshold,
        note: None,
    };
    Ok(ModelStage {
        model: out.model,
        train_logits: out.out_of_sample.logits,
        test_logits,
        model_test_logits: test.logits,
        train_features: train_final.features,
        test_features: test.features,
        fold_test_logits,
        fold: Some(out.fold_of),
        dynamics: Some(out.dynamics),
        aum_threshold: out.aum_threshold,
        traced: out.traced,
        summary,
    })
}

/// The model stage of a model made elsewhere (imported, or built in code):
/// both splits predicted by it, no folds, no training dynamics. Its
/// training-image probabilities are in-sample, and the summary says so.
pub fn from_model(ds: &Dataset, model: ResNet, source: String, device: &Device) -> Result<ModelStage> {
    let (train, test) = predict_splits(&model, ds)?;
    let summary = ModelSummary {
        source,
        config: model.config.clone(),
        training: None,
        folds: None,
        recipe: None,
        predictions: None,
        device: model::device_name(device),
        last_epoch: None,
        aum_threshold: None,
        note: Some("training-image probabilities are in-sample: the imported model trained on those images".into()),
    };
    Ok(ModelStage {
        model,
        train_logits: train.logits,
        model_test_logits: test.logits.clone(),
        test_logits: test.logits,
        train_features: train.features,
        test_features: test.features,
        fold_test_logits: Vec::new(),
        fold: None,
        dynamics: None,
        aum_threshold: None,
        traced: Vec::new(),
        summary,
    })
}

/// Logits and features of both splits, in batches of 256.
fn predict_splits(model: &ResNet, ds: &Dataset) -> Result<(model::Predictions, model::Predictions)> {
    let (h, w, batch) = (ds.height, ds.width, 256);
    let train = model::predict(model, &ds.train.pixels, ds.train.len(), h, w, batch)?;
    let test = model::predict(model, &ds.test.pixels, ds.test.len(), h, w, batch)?;
    Ok((train, test))
}

impl ModelStage {
    /// Train then test logits, `[n, classes]`, in sample order.
    pub fn logits(&self) -> Vec<f32> {
        self.train_logits.iter().chain(&self.test_logits).copied().collect()
    }

    /// The held-out fold of every sample (train then test; null for test
    /// rows and imported models).
    pub fn folds(&self, n: usize) -> Vec<Option<i32>> {
        (0..n).map(|i| self.fold.as_ref().and_then(|f| f.get(i)).map(|&f| f as i32)).collect()
    }

    /// Per-image AUM of the final model's training (train rows).
    pub fn aum(&self) -> Option<Vec<f32>> {
        self.dynamics.as_ref().map(|d| (0..d.n).map(|i| d.aum(i)).collect())
    }

    /// `samples.parquet`'s AUM flag for `n` samples (train rows first).
    pub fn aum_flag(&self, n: usize) -> Columns {
        let flag = (0..n).map(|i| self.aum_threshold.as_ref().and_then(|a| a.flag(i)));
        TableBuilder::new(&SAMPLE_AUM_FLAG).opt_bool("aum_mislabeled", flag).finish()
    }

    /// Saves the final model as `path` (safetensors, PyTorch names).
    pub fn save(&self, path: &Path, seed: u64) -> Result<()> {
        let extra = BTreeMap::from([("seed".to_string(), seed.to_string())]);
        checkpoint::save(path, &self.model, &extra)
    }
}

/// `samples.parquet`'s model columns for every sample in order (`fold`
/// null where none; the dynamics cover the first `dynamics.n` rows, train).
pub fn sample_columns(
    classes: &[String],
    out: &SampleOutputs,
    fold: &[Option<i32>],
    dynamics: Option<&Dynamics>,
) -> Columns {
    let n = out.pred.len();
    let dyn_col = |f: &dyn Fn(&Dynamics, usize) -> Option<f32>| -> Vec<Option<f32>> {
        (0..n).map(|i| dynamics.filter(|d| i < d.n).and_then(|d| f(d, i))).collect()
    };
    let aum = dyn_col(&|d, i| Some(d.aum(i)));
    let forgetting = dyn_col(&|d, i| Some(d.forgetting_events(i) as f32));
    let first = dyn_col(&|d, i| d.first_learned(i).map(|e| e as f32));
    TableBuilder::new(&SAMPLE_MODEL)
        .opt_i32("fold", fold.iter().copied())
        .f32_rows("probs", out.probs.clone(), out.classes)
        .i32("pred", out.pred.iter().map(|&p| p as i32))
        .utf8("pred_name", out.pred.iter().map(|&p| classes[p as usize].as_str()))
        .f32("loss", out.loss.iter().copied())
        .f32("self_confidence", out.self_confidence.iter().copied())
        .f32("margin", out.margin.iter().copied())
        .opt_f32("aum", aum)
        .opt_i32("forgetting_events", forgetting.iter().map(|v| v.map(|x| x as i32)))
        .opt_i32("first_learned_epoch", first.iter().map(|v| v.map(|x| x as i32)))
        .finish()
}

/// `classes.parquet`'s mean self-confidence per class: training images
/// (out-of-sample probabilities when trained by cross-validation) and test images.
pub fn class_confidence(s: &Samples, out: &SampleOutputs) -> Columns {
    let k = s.classes.len();
    let mean = |split: Split| -> Vec<Option<f64>> {
        let (mut sum, mut n) = (vec![0f64; k], vec![0usize; k]);
        for (row, &l) in s.labels_of(split).iter().enumerate() {
            sum[l as usize] += out.self_confidence[s.row(split, row)] as f64;
            n[l as usize] += 1;
        }
        sum.iter().zip(&n).map(|(s, &n)| (n > 0).then(|| s / n as f64)).collect()
    };
    TableBuilder::new(&CLASS_CONFIDENCE)
        .opt_f64("mean_self_confidence", mean(Split::Train))
        .opt_f64("mean_self_confidence_test", mean(Split::Test))
        .finish()
}

/// `dynamics.parquet`.
pub fn dynamics(ids: &[String], d: &Dynamics) -> RecordBatch {
    let rows = || (0..d.n).flat_map(move |i| (0..d.epochs).map(move |e| (i, e)));
    TableBuilder::new(&DYNAMICS)
        .utf8("id", rows().map(|(i, _)| ids[i].as_str()))
        .i32("epoch", rows().map(|(_, e)| e as i32 + 1))
        .f32("loss", rows().map(|(i, e)| d.loss[e * d.n + i]))
        .f32("margin", rows().map(|(i, e)| d.margin[e * d.n + i]))
        .bool("correct", rows().map(|(i, e)| d.correct[e * d.n + i]))
        .finish_table(&schema::DYNAMICS)
}

impl super::Made for ModelStage {
    fn sample_columns(&self, run: &super::RunState) -> Vec<Columns> {
        let n = run.samples.len();
        vec![
            sample_columns(run.samples.classes, &run.outputs, &self.folds(n), self.dynamics.as_ref()),
            self.aum_flag(n),
        ]
    }

    fn class_columns(&self, run: &super::RunState) -> Vec<Columns> {
        vec![class_confidence(&run.samples, &run.outputs)]
    }

    fn write(&self, run: &super::RunState, writer: &mut crate::run::RunWriter) -> Result<()> {
        if let Some(d) = &self.dynamics {
            writer.write(&crate::run::schema::DYNAMICS, &dynamics(run.samples.train_ids, d))?;
        }
        self.save(&writer.path(MODEL_FILE), run.seed)
    }

    fn section(&self, manifest: &mut crate::run::RunManifest) {
        manifest.set(&self.summary);
    }
}
