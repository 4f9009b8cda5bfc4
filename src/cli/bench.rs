//! `misfit bench`: measure speed against PyTorch (or cleanlab), and the
//! detectors against known answers.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use misfit::bench::{self, BenchConfig};
use misfit::data::{DatasetSpec, LoadOptions};
use misfit::model;
use std::path::PathBuf;
use std::process::ExitCode;

use super::load::LoadArgs;
use super::model::DeviceArg;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training-step and inference throughput of a ResNet at one batch size,
    /// misfit against PyTorch (when importable by --python) in the same run.
    Train(BenchModelArgs),
    /// PGD throughput (L-inf, 8/255 in PyTorch; every image takes every
    /// step) of a ResNet, misfit against PyTorch in the same run.
    Attack {
        #[command(flatten)]
        model: BenchModelArgs,
        /// PGD steps per attack.
        #[arg(long, default_value_t = 10)]
        pgd_steps: usize,
    },
    /// Bring-your-own scoring at scale on generated data (probabilities,
    /// labels with 10% flipped, embeddings), against cleanlab's
    /// find_label_issues (when importable by --python) in the same run.
    Score {
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
        #[arg(long, default_value_t = 10)]
        classes: usize,
        #[arg(long, default_value_t = 64)]
        dim: usize,
        /// Also time the full scoring with embeddings and neighbours, each
        /// neighbour search on its own, and Datalab (label, outlier and
        /// near_duplicate issues; up to 200,000 rows) when --python has
        /// cleanlab[datalab].
        #[arg(long)]
        embeddings: bool,
        /// Also time HNSW (slow to build above 100,000 rows).
        #[arg(long)]
        hnsw: bool,
        #[arg(long, default_value = "python3")]
        python: String,
        /// Folder for the generated files (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Calibration of the near-duplicate detector on a dataset: transformed
    /// copies of test images (crop, shift, flip, JPEG, brightness, colour)
    /// searched among all its images (recall), random same-class pairs
    /// (false-match rate), then the detector on the dataset itself.
    Duplicates {
        /// The dataset (as `misfit audit` takes it).
        dataset: String,
        #[command(flatten)]
        load: LoadArgs,
        /// Transformed copies of test images.
        #[arg(long, default_value_t = 1200)]
        copies: usize,
        /// Random pairs of distinct same-class test images.
        #[arg(long, default_value_t = 20000)]
        random_pairs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write a PNG of 12 train/test pairs found (seeded sample) here.
        #[arg(long, value_name = "FILE")]
        sheet: Option<PathBuf>,
        /// A person's verdicts on pairs (CSV: id_a,id_b,verdict as same,
        /// different or unsure): print the precision of a seeded sample of 48
        /// reported train/test pairs.
        #[arg(long, value_name = "FILE")]
        verdicts: Option<PathBuf>,
        /// Write every candidate pair judged on the dataset itself here (CSV).
        #[arg(long, value_name = "FILE")]
        judged: Option<PathBuf>,
    },
    /// The label flags against known wrong labels on real probabilities:
    /// one split of a run (out-of-sample probabilities, embeddings, labels
    /// taken as the truth) with label noise shaped like the model's confusion
    /// injected at each rate, scored by `misfit score`; precision, recall
    /// and F1 of likely_mislabeled, label_issue and "prediction != label".
    Flags {
        /// The run folder (an audit's, with embeddings).
        run_dir: PathBuf,
        #[arg(long, default_value = "test", value_parser = ["train", "test"])]
        split: String,
        /// Noise rates, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0.1,0.4")]
        noise: Vec<f64>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Folder for the noisy files and score runs (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The label flags against known wrong labels on real cross-validated
    /// probabilities (DIR/SET/MODEL/pred_probs.npy with labels.npy and
    /// label_errors_mask.npy, or noisy_labels.npy and true_labels.npy, as in
    /// shared/label-noise): precision, recall and F1 of likely_mislabeled,
    /// "prediction != label" and label_issue, AUROC and average precision
    /// of issue_score, per set and model.
    LabelNoise { dir: PathBuf },
}

/// The model and batch a benchmark times.
#[derive(Args)]
pub struct BenchModelArgs {
    #[arg(long, default_value_t = 20)]
    depth: usize,
    /// Channels of the first stage.
    #[arg(long, default_value_t = 16)]
    width: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 32)]
    size: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Timed steps (batches).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Measure misfit then PyTorch this many times in turn and report the
    /// median ratio of the pairs (shared or throttled machines drift by tens
    /// of percent between runs).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Python interpreter with PyTorch for the reference.
    #[arg(long, default_value = "python3")]
    python: String,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

impl BenchModelArgs {
    pub fn config(&self) -> BenchConfig {
        BenchConfig {
            depth: self.depth,
            width: self.width,
            size: self.size,
            batch: self.batch,
            steps: self.steps,
            warmup: self.warmup,
        }
    }
}

pub fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Attack { model: m, pgd_steps } => {
            let device = model::select_device(m.device.into())?;
            bench::report_attack(&m.config(), pgd_steps, &m.python, &device)?;
        }
        BenchCommand::Train(m) => {
            let device = model::select_device(m.device.into())?;
            bench::report_train(&m.config(), m.rounds, &m.python, &device)?;
        }
        BenchCommand::Score { n, classes, dim, embeddings, hnsw, python, dir } => {
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("misfit-bench-{}", std::process::id())));
            bench::score::report(&dir, n, classes, dim, embeddings, hnsw, &python)?;
        }
        BenchCommand::Duplicates { dataset, load, copies, random_pairs, seed, sheet, verdicts, judged } => {
            let spec = DatasetSpec::parse(&dataset)?;
            let ds = misfit::data::load(&spec, &LoadOptions::try_from(&load)?)?;
            let (verdicts, judged) = (verdicts.as_deref(), judged.as_deref());
            bench::copies::report(&ds, copies, random_pairs, seed, sheet.as_deref(), verdicts, judged)?;
        }
        BenchCommand::LabelNoise { dir } => bench::label_noise::report(&dir)?,
        BenchCommand::Flags { run_dir, split, noise, seed, dir } => {
            if let Some(r) = noise.iter().find(|r| !(0.0..1.0).contains(*r)) {
                bail!("--noise {r}: each rate must be in [0, 1)");
            }
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("misfit-bench-{}", std::process::id())));
            bench::flags::report(&run_dir, &split, &noise, seed, &dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
