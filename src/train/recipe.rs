//! The training recipe: the built-in settings for the demo and for every
//! other dataset, the options that override them, and the input
//! normalisation taken from the training images.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::{Augment, Schedule, TrainConfig};
use crate::data::{Dataset, DatasetSpec};
use crate::error::{Error, Result};
use crate::model::{DeviceChoice, ModelConfig, Shortcut};

/// How to get the model: train one (with cross-validation) or import one.
/// `None` fields take the recipe's value (see [`recipe`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelOptions {
    /// Import this trained model (safetensors or PyTorch state dict) instead of training.
    pub import: Option<PathBuf>,
    /// Input normalisation for an imported model whose file has none.
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub depth: Option<usize>,
    pub width: Option<usize>,
    pub shortcut: Option<Shortcut>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub momentum: Option<f64>,
    pub nesterov: bool,
    pub weight_decay: Option<f64>,
    pub schedule: Option<Schedule>,
    pub label_smoothing: Option<f64>,
    /// The first epochs of every training run at half the image size
    /// (progressive resizing; default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_epochs: Option<usize>,
    /// Train without crop and flip augmentation.
    pub no_augment: bool,
    /// Cross-validation folds (default: [`super::cv::default_folds`]).
    pub folds: Option<usize>,
    /// Skip the threshold-sample run that sets the AUM threshold.
    pub no_aum_threshold: bool,
    /// Train a final model on every training image even where the recipe
    /// lets the fold models serve (the fast recipe's lever).
    #[serde(default)]
    pub final_model: bool,
    /// Snapshots of each serving model summed by TracIn (default
    /// [`super::cv::TRACIN_SNAPSHOTS`]).
    #[serde(default)]
    pub tracin_checkpoints: Option<usize>,
    pub device: Option<DeviceChoice>,
    /// Which built-in recipe (default: [`Recipe::resolve`]).
    #[serde(default)]
    pub recipe: Option<Recipe>,
}

/// The built-in training recipes for datasets other than the demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Within an hour for CIFAR-10 on 2 CPU cores: [`FAST_FOLDS`] folds of
    /// [`FAST_EPOCHS`] epochs, the first [`FAST_SMALL_EPOCHS`] of them at
    /// half the image size, whose models are also the final model (the
    /// test split gets their ensemble, with flipped copies), no separate
    /// final model and no AUM threshold run.
    Fast,
    /// The CIFAR ResNet paper's 100 epochs per run: K folds, a final model on
    /// every training image and the AUM threshold run.
    Full,
}

impl Recipe {
    /// The recipe when none is asked for: fast on the CPU for datasets of
    /// at least [`FAST_FROM_IMAGES`] training images (the full one would
    /// take most of a day there), full on a GPU and for smaller datasets.
    pub fn resolve(asked: Option<Recipe>, n_train: usize, on_gpu: bool) -> Recipe {
        asked.unwrap_or(if !on_gpu && n_train >= FAST_FROM_IMAGES { Recipe::Fast } else { Recipe::Full })
    }
}

/// Training images from which the CPU's default recipe is [`Recipe::Fast`].
pub const FAST_FROM_IMAGES: usize = 20_000;
/// Folds of the fast recipe: each image's probabilities from a model that
/// trained on the other half, and two models for the test split's ensemble.
pub const FAST_FOLDS: usize = 2;
/// Epochs of each fold model of the fast recipe.
pub const FAST_EPOCHS: usize = 40;
/// Of [`FAST_EPOCHS`], the first ones at half the image size (progressive
/// resizing: a step costs about a third). 40 epochs with 24 small cost
/// 1.2x the 20 full ones this recipe had and scored 4.5 points more on the
/// 10,000-image subset (docs/recipe.md). With `--epochs N` the same share.
pub const FAST_SMALL_EPOCHS: usize = 24;

impl ModelOptions {
    /// Checks the options on their own, before any data is read or any model
    /// trained: a learning rate of -1 or NaN would otherwise train, diverge,
    /// and then advise lowering it.
    pub fn validate(&self) -> Result<()> {
        let positive = |flag: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => {
                Err(Error::Usage(format!("{flag} {x}: must be a number above 0")))
            }
            _ => Ok(()),
        };
        let share = |flag: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && (0.0..1.0).contains(&x)) => {
                Err(Error::Usage(format!("{flag} {x}: must be from 0 to below 1")))
            }
            _ => Ok(()),
        };
        positive("--lr", self.lr)?;
        share("--momentum", self.momentum)?;
        share("--label-smoothing", self.label_smoothing)?;
        if let Some(w) = self.weight_decay.filter(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(Error::Usage(format!("--weight-decay {w}: must be a number of at least 0")));
        }
        for (flag, v) in [("--epochs", self.epochs), ("--batch-size", self.batch_size)] {
            if v == Some(0) {
                return Err(Error::Usage(format!("{flag} must be at least 1")));
            }
        }
        if self.tracin_checkpoints == Some(0) {
            return Err(Error::Usage("--tracin-checkpoints must be at least 1".into()));
        }
        if let Some(f) = self.folds.filter(|&f| f < 2) {
            return Err(Error::Usage(format!(
                "--folds {f}: cross-validation needs at least 2 folds (each image is scored by a model trained on the others)"
            )));
        }
        for (flag, v) in [("--mean", self.mean), ("--std", self.std)] {
            if let Some(c) = v.filter(|c| c.iter().any(|x| !x.is_finite())) {
                return Err(Error::Usage(format!("{flag} {c:?}: must be finite numbers")));
            }
        }
        if let Some(s) = self.std.filter(|s| s.iter().any(|x| *x <= 0.0)) {
            return Err(Error::Usage(format!("--std {s:?}: every channel's deviation must be above 0")));
        }
        Ok(())
    }
}

/// How the cross-validation runs and what comes after its folds.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The recipe this plan follows (None: the demo's own).
    pub recipe: Option<Recipe>,
    /// Cross-validation folds.
    pub folds: usize,
    /// Train one more model on every training image for the test split,
    /// embeddings, attacks and explanations; without it the fold models
    /// serve (see [`Recipe::Fast`]).
    pub final_model: bool,
    /// Run the AUM threshold-sample run.
    pub aum_threshold: bool,
    /// Average each prediction with its left-right mirror's (test-time flips).
    pub flip_predictions: bool,
    /// Epochs of the probe model behind `--noise confusion` (its test-split
    /// confusion is all that is read from it).
    pub probe_epochs: usize,
    /// Snapshots kept of each model that serves the later stages, for the
    /// influence stage's TracIn sum (see [`super::cv::tracin_epochs`]).
    pub tracin_checkpoints: usize,
}

/// The built-in recipes: the demo's (small, fast on 2 CPU cores), and for
/// every other dataset the fast or the full one (see [`Recipe`]).
/// Returns (depth, width, training, plan) before the options' overrides.
pub fn recipe(
    spec: &DatasetSpec,
    n_train: usize,
    on_gpu: bool,
    asked: Option<Recipe>,
    seed: u64,
) -> (usize, usize, TrainConfig, Plan) {
    match (spec, asked) {
        (DatasetSpec::Demo(_), None) => {
            let mut t = TrainConfig::cifar(DEMO_EPOCHS, seed);
            t.batch_size = 64;
            t.lr = 0.05;
            t.sgd.weight_decay = 5e-4;
            t.augment = Augment { crop_padding: 2, flip: true };
            let plan = Plan {
                recipe: None,
                folds: super::cv::default_folds(n_train),
                final_model: true,
                aum_threshold: true,
                flip_predictions: false,
                probe_epochs: DEMO_EPOCHS,
                tracin_checkpoints: super::cv::TRACIN_SNAPSHOTS,
            };
            (20, DEMO_WIDTH, t, plan)
        }
        _ => match Recipe::resolve(asked, n_train, on_gpu) {
            Recipe::Full => {
                let plan = Plan {
                    recipe: Some(Recipe::Full),
                    folds: super::cv::default_folds(n_train),
                    final_model: true,
                    aum_threshold: true,
                    flip_predictions: false,
                    probe_epochs: 100,
                    tracin_checkpoints: super::cv::TRACIN_SNAPSHOTS,
                };
                (20, 16, TrainConfig::cifar(100, seed), plan)
            }
            Recipe::Fast => {
                // Short one-cycle runs want more weight decay than the
                // paper's 1e-4 (5e-4, as in the fast CIFAR recipes).
                let mut t = TrainConfig::cifar(FAST_EPOCHS, seed);
                t.sgd.weight_decay = 5e-4;
                t.sgd.nesterov = true;
                t.small_epochs = FAST_SMALL_EPOCHS;
                let plan = Plan {
                    recipe: Some(Recipe::Fast),
                    folds: FAST_FOLDS,
                    final_model: false,
                    aum_threshold: false,
                    flip_predictions: true,
                    probe_epochs: FAST_PROBE_EPOCHS,
                    tracin_checkpoints: super::cv::TRACIN_SNAPSHOTS,
                };
                (20, 16, t, plan)
            }
        },
    }
}

/// Epochs of the fast recipe's probe model for `--noise confusion`: enough
/// for the shape of its confusion, not for its accuracy.
pub const FAST_PROBE_EPOCHS: usize = 4;

/// Epochs of each demo training run (24: the demo audit, attacks included,
/// takes about 2 minutes on 2 cores with the direct convolution kernels; 12
/// and then 18 with slower convolutions, and the outlier ranking was
/// unsteady at 12-16 epochs).
pub const DEMO_EPOCHS: usize = 24;
/// First-stage channels of the demo model.
pub const DEMO_WIDTH: usize = 8;

/// Per-channel mean and standard deviation of `[n, h, w, 3]` pixels in [0, 1].
pub fn channel_stats(pixels: &[u8]) -> ([f32; 3], [f32; 3]) {
    let (mut sum, mut sq) = ([0f64; 3], [0f64; 3]);
    for px in pixels.chunks_exact(3) {
        for c in 0..3 {
            let v = px[c] as f64 / 255.0;
            sum[c] += v;
            sq[c] += v * v;
        }
    }
    let n = (pixels.len() / 3).max(1) as f64;
    let mean = sum.map(|s| s / n);
    let std = [0, 1, 2].map(|c| ((sq[c] / n - mean[c] * mean[c]).max(1e-12)).sqrt() as f32);
    (mean.map(|m| m as f32), std)
}

/// The model and training configuration of a training run and the plan of
/// its cross-validation: the recipe for the dataset, overridden by the options.
pub fn setup(
    ds: &Dataset,
    spec: &DatasetSpec,
    seed: u64,
    m: &ModelOptions,
    on_gpu: bool,
) -> Result<(ModelConfig, TrainConfig, Plan)> {
    let (depth, width, mut t, mut plan) = recipe(spec, ds.train.len(), on_gpu, m.recipe, seed);
    plan.folds = m.folds.unwrap_or(plan.folds);
    plan.aum_threshold &= !m.no_aum_threshold;
    plan.final_model |= m.final_model;
    plan.tracin_checkpoints = m.tracin_checkpoints.unwrap_or(plan.tracin_checkpoints);
    let (recipe_epochs, recipe_small) = (t.epochs, t.small_epochs);
    t.epochs = m.epochs.unwrap_or(t.epochs);
    // The fast recipe's probe keeps its own epochs whatever --epochs says:
    // the noise `--noise confusion` injects is then the same across epoch
    // settings (a lever measured with --epochs compares like with like).
    if plan.recipe != Some(Recipe::Fast) {
        plan.probe_epochs = t.epochs;
    }
    t.batch_size = m.batch_size.unwrap_or(t.batch_size);
    t.lr = m.lr.unwrap_or(t.lr);
    t.sgd.momentum = m.momentum.unwrap_or(t.sgd.momentum);
    t.sgd.nesterov = m.nesterov || t.sgd.nesterov;
    t.sgd.weight_decay = m.weight_decay.unwrap_or(t.sgd.weight_decay);
    t.schedule = m.schedule.clone().unwrap_or(t.schedule);
    t.label_smoothing = m.label_smoothing.unwrap_or(t.label_smoothing);
    let (h, w) = (ds.height, ds.width);
    let halvable = super::halvable(h, w);
    // The recipe's small epochs keep their share of the epochs, and are left
    // out on images that cannot be halved; asked for, they are checked.
    t.small_epochs = match m.small_epochs {
        Some(n) => n,
        None if halvable => recipe_small * t.epochs / recipe_epochs.max(1),
        None => 0,
    };
    if t.small_epochs > 0 && t.small_epochs >= t.epochs {
        return Err(Error::Usage(format!(
            "--small-epochs {}: must be below the epochs ({}), so that the model ends at full size",
            t.small_epochs, t.epochs
        )));
    }
    if t.small_epochs > 0 && !halvable {
        return Err(Error::Usage(format!(
            "--small-epochs {}: small epochs train at half size, and {h}x{w} images need an even height and width of at least 8",
            t.small_epochs
        )));
    }
    if m.no_augment {
        t.augment = Augment { crop_padding: 0, flip: false };
    }
    let (mean, std) = channel_stats(&ds.train.pixels);
    let mcfg = ModelConfig {
        depth: m.depth.unwrap_or(depth),
        width: m.width.unwrap_or(width),
        shortcut: m.shortcut.unwrap_or(Shortcut::A),
        classes: ds.classes.clone(),
        mean,
        std,
    };
    mcfg.validate()?;
    Ok((mcfg, t, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_recipe_is_the_default_for_large_datasets_on_the_cpu_only() {
        assert_eq!(Recipe::resolve(None, 50_000, false), Recipe::Fast);
        assert_eq!(Recipe::resolve(None, FAST_FROM_IMAGES, false), Recipe::Fast);
        assert_eq!(Recipe::resolve(None, FAST_FROM_IMAGES - 1, false), Recipe::Full);
        assert_eq!(Recipe::resolve(None, 50_000, true), Recipe::Full);
        assert_eq!(Recipe::resolve(Some(Recipe::Full), 50_000, false), Recipe::Full);
        assert_eq!(Recipe::resolve(Some(Recipe::Fast), 100, true), Recipe::Fast);
        let folder = DatasetSpec::ImageFolder("some/folder".into());
        let (_, _, t, plan) = recipe(&folder, 50_000, false, None, 0);
        assert_eq!(
            (plan.folds, plan.final_model, plan.aum_threshold, t.epochs, t.small_epochs),
            (FAST_FOLDS, false, false, FAST_EPOCHS, FAST_SMALL_EPOCHS)
        );
        let (_, _, t, plan) = recipe(&folder, 50_000, false, Some(Recipe::Full), 0);
        assert_eq!(
            (plan.folds, plan.final_model, plan.aum_threshold, t.epochs, t.small_epochs),
            (4, true, true, 100, 0)
        );
    }

    /// A dataset of `n` black `side`x`side` training images in 2 classes.
    fn images(n: usize, side: usize) -> Dataset {
        let set = crate::data::ImageSet {
            ids: (0..n).map(|i| format!("train/{i}.png")).collect(),
            labels: (0..n).map(|i| (i % 2) as u32).collect(),
            pixels: vec![0; n * side * side * 3],
        };
        Dataset {
            name: "t".into(),
            source: "t".into(),
            classes: vec!["a".into(), "b".into()],
            height: side,
            width: side,
            train: set,
            test: crate::data::ImageSet { ids: vec![], labels: vec![], pixels: vec![] },
        }
    }

    #[test]
    fn the_fast_recipes_small_epochs_keep_their_share_and_stay_out_of_odd_sizes() {
        let spec = DatasetSpec::ImageFolder("some/folder".into());
        let fast = ModelOptions { recipe: Some(Recipe::Fast), ..Default::default() };
        let small = |ds: &Dataset, m: &ModelOptions| setup(ds, &spec, 0, m, false).map(|(_, t, _)| t.small_epochs);
        let even = images(4, 32);
        assert_eq!(small(&even, &fast).unwrap(), FAST_SMALL_EPOCHS);
        assert_eq!(small(&even, &ModelOptions { epochs: Some(10), ..fast.clone() }).unwrap(), 6);
        assert_eq!(small(&even, &ModelOptions { epochs: Some(1), ..fast.clone() }).unwrap(), 0);
        assert_eq!(small(&even, &ModelOptions { small_epochs: Some(0), ..fast.clone() }).unwrap(), 0);
        // Odd sizes train at full size when the recipe chose the small
        // epochs, and are refused when they were asked for.
        let odd = images(4, 31);
        assert_eq!(small(&odd, &fast).unwrap(), 0);
        let asked = ModelOptions { small_epochs: Some(2), ..fast.clone() };
        assert!(small(&odd, &asked).unwrap_err().to_string().contains("even height and width"));
        // The other recipes have none.
        let full = ModelOptions { recipe: Some(Recipe::Full), ..Default::default() };
        assert_eq!(small(&even, &full).unwrap(), 0);
    }
}
