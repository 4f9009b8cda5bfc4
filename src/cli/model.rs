//! The model options of `misfit audit`: import one or train one, and the device.

use anyhow::{bail, Result};
use clap::Args;
use misfit::model::{DeviceChoice, Shortcut};
use misfit::train::recipe::{ModelOptions, Recipe};
use misfit::train::Schedule;
use std::path::PathBuf;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RecipeArg {
    Fast,
    Full,
}

impl From<RecipeArg> for Recipe {
    fn from(r: RecipeArg) -> Self {
        match r {
            RecipeArg::Fast => Recipe::Fast,
            RecipeArg::Full => Recipe::Full,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => DeviceChoice::Auto,
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Cuda => DeviceChoice::Cuda,
        }
    }
}

/// The model: import one, or train one (defaults: the built-in recipe for the
/// dataset, see docs/model.md).
#[derive(Args)]
pub struct ModelArgs {
    /// Import a trained ResNet (safetensors with PyTorch names, or a PyTorch
    /// .pt/.pth state dict) instead of training one.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Input normalisation mean (R,G,B in [0,1]) for an imported model whose file has none.
    #[arg(long, value_name = "R,G,B", value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Input normalisation std for an imported model whose file has none.
    #[arg(long, value_name = "R,G,B", value_delimiter = ',')]
    std: Option<Vec<f32>>,
    /// ResNet depth, 6n+2 (20, 32, 44, 56).
    #[arg(long)]
    depth: Option<usize>,
    /// Channels of the first stage (16 in the paper; stages have 1x, 2x, 4x).
    #[arg(long)]
    width: Option<usize>,
    /// Shortcut option where shapes change: A (subsample + zero-pad) or B (1x1 conv + BN).
    #[arg(long, value_parser = ["A", "B"])]
    shortcut: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    momentum: Option<f64>,
    /// Nesterov momentum.
    #[arg(long)]
    nesterov: bool,
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Learning-rate schedule.
    #[arg(long, value_parser = ["step", "cosine", "onecycle"])]
    schedule: Option<String>,
    /// Label smoothing of the training loss (default 0: off).
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Train the first N epochs of every run on images at half their height
    /// and width (2x2 means): progressive resizing, a quarter of the pixels
    /// per step (default: 24 of the fast recipe's 40 epochs, the same share
    /// of --epochs; 0 with the other recipes and on odd image sizes).
    #[arg(long, value_name = "N")]
    small_epochs: Option<usize>,
    /// Train without random-crop and flip augmentation.
    #[arg(long)]
    no_augment: bool,
    /// Training recipe for datasets other than the demo. fast: 2 folds of 40
    /// epochs (the first 24 at half the image size) whose models also
    /// predict the test split (an ensemble, with
    /// flipped copies), no final model, no AUM threshold run: CIFAR-10 within
    /// an hour on 2 CPU cores. full: the paper's 100 epochs, K folds, a final
    /// model and the AUM threshold run. Default: fast on the CPU from 20,000
    /// training images, full otherwise.
    #[arg(long, value_enum)]
    recipe: Option<RecipeArg>,
    /// Cross-validation folds (default: 2 with the fast recipe; otherwise 5
    /// up to 20,000 training images, 4 above).
    #[arg(long)]
    folds: Option<usize>,
    /// Skip the extra training run with threshold samples that sets the AUM threshold.
    #[arg(long)]
    no_aum_threshold: bool,
    /// Train a final model on every training image for the test split,
    /// embeddings, attacks and explanations, even with the fast recipe
    /// (whose fold models serve otherwise).
    #[arg(long)]
    final_model: bool,
    /// Snapshots of each model that serves the later stages (the final one,
    /// or each fold model) kept for the influence stage's TracIn sum, evenly
    /// spaced over its epochs, the last at its end, each weighted by the
    /// learning rate over the epochs it stands for [default: 1, the end]
    #[arg(long)]
    tracin_checkpoints: Option<usize>,
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
}

impl ModelArgs {
    pub fn options(&self) -> Result<ModelOptions> {
        let three = |flag: &str, v: &Option<Vec<f32>>| -> Result<Option<[f32; 3]>> {
            match v.as_deref() {
                None => Ok(None),
                Some([r, g, b]) => Ok(Some([*r, *g, *b])),
                Some(other) => bail!("--{flag} takes 3 comma-separated numbers (R,G,B), got {}", other.len()),
            }
        };
        Ok(ModelOptions {
            import: self.model.clone(),
            mean: three("mean", &self.mean)?,
            std: three("std", &self.std)?,
            depth: self.depth,
            width: self.width,
            shortcut: self.shortcut.as_deref().map(|s| if s == "A" { Shortcut::A } else { Shortcut::B }),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            schedule: self.schedule.as_deref().and_then(Schedule::parse),
            label_smoothing: self.label_smoothing,
            small_epochs: self.small_epochs,
            no_augment: self.no_augment,
            folds: self.folds,
            no_aum_threshold: self.no_aum_threshold,
            final_model: self.final_model,
            tracin_checkpoints: self.tracin_checkpoints,
            device: self.device.map(Into::into),
            recipe: self.recipe.map(Into::into),
        })
    }
}
