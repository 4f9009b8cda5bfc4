//! The `misfit` command line: parses arguments and dispatches to the
//! library, which does the work and the printing.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use misfit::attack;
use misfit::audit::{self, AuditOptions, NoiseKind};
use misfit::bench::{self, BenchConfig};
use misfit::byo;
use misfit::data::demo::DemoConfig;
use misfit::data::{fetch, inspect, synth, DatasetSpec, LoadOptions};
use misfit::explain;
use misfit::findings::frame::{self, Format};
use misfit::findings::{self, RuleSet, Severity};
use misfit::model::{self, DeviceChoice, Shortcut};
use misfit::query;
use misfit::report::{
    self,
    ticket::{self, Selection},
};
use misfit::run::read::Run;
use misfit::run::summary::summary;
use misfit::scores::{IndexChoice, PruneMethod, ScoreConfig};
use misfit::train::recipe::{ModelOptions, Recipe};
use misfit::train::Schedule;

/// Audit an image-classification dataset and its model: likely mislabeled
/// images, most-missed classes, most-attacked classes, and how they connect.
#[derive(Parser)]
#[command(name = "misfit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the audit on a dataset (the built-in demo when none is given).
    Audit(AuditArgs),
    /// Look at, make or download datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Score labels from your own model's outputs (bring your own model):
    /// out-of-sample probabilities and labels, optionally embeddings, from
    /// Parquet or .npy.
    Score(ScoreArgs),
    /// Measure speed against PyTorch (or cleanlab) on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run the rules over a run folder: write pairs.parquet,
    /// correlations.parquet and findings.parquet into it, and print the findings.
    Findings(FindingsArgs),
    /// SQL over a run's tables (Polars SQL; tables by name: samples, classes, ...).
    Query(QueryArgs),
    /// Render report.html and report.md of a run folder again.
    Report {
        /// A run folder (outputs/demo).
        run_dir: PathBuf,
        /// A folder of *.toml rules to add to the shipped ones (same id: replaces).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write what a data ticket needs about a finding, a rule or a class:
    /// ticket.md, images.csv and contact_sheet.png.
    Ticket(TicketArgs),
}

#[derive(Args)]
#[group(required = true, multiple = false, id = "about")]
struct TicketSelect {
    /// One finding, RULE#ROW (e.g. confused-pairs#1; `misfit findings RUN --format csv` shows rule and rule_row).
    #[arg(long, group = "about", value_name = "RULE#ROW")]
    finding: Option<String>,
    /// Every finding of a rule.
    #[arg(long, group = "about", value_name = "ID")]
    rule: Option<String>,
    /// Every image finding (warn or error) about a class.
    #[arg(long, group = "about", value_name = "NAME")]
    class: Option<String>,
}

#[derive(Args)]
struct TicketArgs {
    /// A run folder (outputs/demo).
    run_dir: PathBuf,
    #[command(flatten)]
    select: TicketSelect,
    /// The ticket's folder (default: RUN_DIR/tickets/<what>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A folder of *.toml rules to add to the shipped ones (same id: replaces).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Replace a ticket already in the folder.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct FindingsArgs {
    /// A run folder (outputs/demo).
    run_dir: PathBuf,
    /// A folder of *.toml rules to add to the shipped ones (same id: replaces).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Only findings of this severity or above: info, warn, error.
    #[arg(long, default_value = "info")]
    severity: String,
    /// Only the findings of this rule (repeatable).
    #[arg(long = "rule", value_name = "ID")]
    rule: Vec<String>,
    /// Only the findings about this class (by name).
    #[arg(long, value_name = "NAME")]
    class: Option<String>,
    /// table (per rule, in words), csv or json (one object per line, every column).
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    format: String,
    /// Findings printed per rule (table format).
    #[arg(long, default_value_t = 10)]
    show: usize,
}

#[derive(Args)]
struct QueryArgs {
    /// A run folder (outputs/demo).
    run_dir: PathBuf,
    /// The query, e.g. "SELECT class_name, miss_rate FROM classes ORDER BY miss_rate DESC".
    #[arg(required_unless_present = "tables")]
    sql: Option<String>,
    /// List the run's tables and their columns instead.
    #[arg(long)]
    tables: bool,
    /// table, csv, json (one object per line) or parquet (needs --out).
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json", "parquet"])]
    format: String,
    /// Write to this file (under a temporary name, renamed into place) instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Let the query read other files on purpose, through read_parquet('...'),
    /// read_csv, read_ipc and read_json (without it: the run's tables only).
    #[arg(long)]
    allow_files: bool,
    /// Let --out replace a file of the run folder itself.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct ScoreArgs {
    /// Probabilities: .npy [n, classes], or Parquet with a `probs` list column
    /// (and optional `label`, `id`, `embedding` columns).
    #[arg(long, value_name = "FILE")]
    probs: PathBuf,
    /// Labels: .npy [n] integers or Parquet `label` column (if not with the probabilities).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Embeddings: .npy [n, dim] (or an `embedding` column with the probabilities).
    #[arg(long, value_name = "FILE")]
    embeddings: Option<PathBuf>,
    /// Class names in label order, comma-separated.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    #[command(flatten)]
    neighbors: NeighborArgs,
    /// Confident-learning filter.
    #[arg(long, default_value = "noise_rate", value_parser = ["noise_rate", "class", "both"])]
    prune: String,
    #[arg(long, default_value = "outputs", value_name = "DIR")]
    outputs: PathBuf,
    #[arg(long, default_value = "score", value_name = "NAME")]
    run: String,
    /// A folder of *.toml rules to add to the shipped ones (same id: replaces).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Print only the summary, as one JSON object.
    #[arg(long)]
    json: bool,
    /// No progress spinner.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum IndexArg {
    Auto,
    Exact,
    Hnsw,
    Ivf,
}

/// The neighbours of every image (scores stage).
#[derive(Args, Clone)]
struct NeighborArgs {
    /// Neighbours per image (the neighbour vote, outliers, neighbors.parquet).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Neighbour search: auto (whichever of exact and ivf is measured faster
    /// on this data at the recall target), or exact, hnsw, ivf.
    #[arg(long, value_enum, default_value = "auto")]
    index: IndexArg,
}

impl NeighborArgs {
    /// The scores stage's settings with these neighbours.
    fn config(&self, prune: PruneMethod) -> ScoreConfig {
        let index = match self.index {
            IndexArg::Auto => IndexChoice::Auto,
            IndexArg::Exact => IndexChoice::Exact,
            IndexArg::Hnsw => IndexChoice::Hnsw,
            IndexArg::Ivf => IndexChoice::Ivf,
        };
        ScoreConfig { k: self.k, index, prune, ..ScoreConfig::default() }
    }
}

#[derive(Subcommand)]
enum BenchCommand {
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
struct BenchModelArgs {
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
    fn config(&self) -> BenchConfig {
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum RecipeArg {
    Fast,
    Full,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DeviceArg {
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum NoiseArg {
    Symmetric,
    Pairwise,
    Confusion,
}

impl From<NoiseArg> for NoiseKind {
    fn from(n: NoiseArg) -> Self {
        match n {
            NoiseArg::Symmetric => NoiseKind::Symmetric,
            NoiseArg::Pairwise => NoiseKind::Pairwise,
            NoiseArg::Confusion => NoiseKind::Confusion,
        }
    }
}

/// The attack stage of the audit.
#[derive(Args, Clone)]
struct AttackArgs {
    /// Skip the attack stage.
    #[arg(long)]
    no_attacks: bool,
    /// Attacks, METHOD:NORM[:TARGET] (method fgsm or pgd, norm linf or l2,
    /// target least-likely or a class name; untargeted without one).
    #[arg(long, value_delimiter = ',', default_value = "fgsm:linf,pgd:linf,pgd:linf:least-likely,pgd:l2")]
    attacks: Vec<String>,
    /// L-inf budgets in [0, 1] pixel units; fractions allowed (8/255).
    #[arg(long, value_delimiter = ',', default_value = "1/255,2/255,4/255,8/255")]
    eps: Vec<String>,
    /// L2 budgets in [0, 1] pixel units (norm over all values of an image).
    #[arg(long, value_delimiter = ',', default_value = "0.125,0.25,0.5,1")]
    eps_l2: Vec<String>,
    /// PGD steps.
    #[arg(long, default_value_t = 10)]
    attack_steps: usize,
    /// PGD step size as a multiple of the budget (default 2.5 / steps).
    #[arg(long)]
    attack_step_ratio: Option<f32>,
    /// PGD random restarts.
    #[arg(long, default_value_t = 1)]
    attack_restarts: usize,
    /// Test images attacked per class (a seeded sample), or `all`
    /// (default: 100; 40 on the built-in demo, to keep it within 3 minutes).
    #[arg(long)]
    attack_per_class: Option<String>,
    /// Also attack test images the model misclassifies (flipped at budget 0).
    #[arg(long)]
    attack_misclassified: bool,
    /// Also attack this many training images per class.
    #[arg(long, default_value_t = 0)]
    attack_train_per_class: usize,
    /// Skip the bisection for each image's smallest flipping budget.
    #[arg(long)]
    no_radius: bool,
    /// Images per attack batch.
    #[arg(long, default_value_t = 256)]
    attack_batch: usize,
}

impl AttackArgs {
    fn config(&self, spec: &DatasetSpec) -> anyhow::Result<Option<attack::AttackConfig>> {
        if self.no_attacks {
            return Ok(None);
        }
        let budgets = |v: &[String], flag: &str| -> anyhow::Result<Vec<f32>> {
            v.iter()
                .map(|b| {
                    let parsed = match b.split_once('/') {
                        Some((n, d)) => {
                            n.trim().parse::<f32>().ok().zip(d.trim().parse::<f32>().ok()).map(|(n, d)| n / d)
                        }
                        None => b.trim().parse::<f32>().ok(),
                    };
                    parsed.ok_or_else(|| anyhow::anyhow!("{flag} '{b}': not a number or fraction"))
                })
                .collect()
        };
        let per_class = match self.attack_per_class.as_deref() {
            None => Some(attack::default_per_class(spec)),
            Some("all") => None,
            Some(n) => {
                Some(n.parse::<usize>().map_err(|_| anyhow::anyhow!("--attack-per-class '{n}': a count or all"))?)
            }
        };
        Ok(Some(attack::AttackConfig {
            attacks: self.attacks.iter().map(|a| attack::AttackSpec::parse(a)).collect::<Result<_, _>>()?,
            eps_linf: budgets(&self.eps, "--eps")?,
            eps_l2: budgets(&self.eps_l2, "--eps-l2")?,
            steps: self.attack_steps,
            step_ratio: self.attack_step_ratio,
            restarts: self.attack_restarts,
            radius: !self.no_radius,
            per_class,
            include_misclassified: self.attack_misclassified,
            train_per_class: self.attack_train_per_class,
            batch: self.attack_batch,
            ..attack::AttackConfig::default()
        }))
    }
}

/// The explain stage of the audit: saliency maps, their checks, root-cause numbers.
#[derive(Args, Clone)]
struct ExplainArgs {
    /// Skip the explain stage.
    #[arg(long)]
    no_explain: bool,
    /// Attribution methods: gradient, smoothgrad, integrated-gradients, grad-cam.
    #[arg(long, value_delimiter = ',', default_value = "gradient,smoothgrad,integrated-gradients,grad-cam")]
    explain_methods: Vec<String>,
    /// Confused class pairs explained (unordered, most test confusions first).
    #[arg(long, default_value_t = 6)]
    explain_pairs: usize,
    /// Test confusions (both directions together) a pair needs to be explained.
    #[arg(long, default_value_t = 4)]
    explain_min_confusions: usize,
    /// Misclassified test images explained per direction of a pair (and as
    /// many correctly classified images of its given class for contrast).
    #[arg(long, default_value_t = 8)]
    explain_per_pair: usize,
    /// Flagged training images explained (the most suspicious first).
    #[arg(long, default_value_t = 12)]
    explain_flagged: usize,
    /// Images of the model-randomisation check.
    #[arg(long, default_value_t = 8)]
    sanity_images: usize,
    /// Images of A attacked towards B per direction of an explained pair.
    #[arg(long, default_value_t = 8)]
    explain_attacked: usize,
    /// SmoothGrad's noise standard deviation, as a share of the [0, 1] pixel
    /// range (before the model's normalisation).
    #[arg(long, default_value_t = 0.15)]
    smoothgrad_noise: f32,
    /// SmoothGrad's noisy copies per image.
    #[arg(long, default_value_t = 25)]
    smoothgrad_samples: usize,
    /// Integrated Gradients' steps.
    #[arg(long, default_value_t = 50)]
    ig_steps: usize,
    /// Integrated Gradients' baseline: black, white or blur.
    #[arg(long, default_value = "black")]
    ig_baseline: String,
    /// What the deletion and insertion curves fill pixels with: blur or mean.
    #[arg(long, default_value = "blur")]
    explain_fill: String,
    /// Images (or noisy copies, or path points) per explain batch.
    #[arg(long, default_value_t = 256)]
    explain_batch: usize,
}

impl ExplainArgs {
    fn config(&self) -> anyhow::Result<Option<explain::ExplainConfig>> {
        if self.no_explain {
            return Ok(None);
        }
        let methods = self
            .explain_methods
            .iter()
            .map(|m| {
                explain::Method::parse(m.trim()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--explain-methods '{m}': not a method (gradient, smoothgrad, integrated-gradients, grad-cam)"
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ig_baseline = match self.ig_baseline.as_str() {
            "black" => explain::Baseline::Black,
            "white" => explain::Baseline::White,
            "blur" => explain::Baseline::Blur,
            b => anyhow::bail!("--ig-baseline '{b}': black, white or blur"),
        };
        let fill = match self.explain_fill.as_str() {
            "blur" => explain::Fill::Blur,
            "mean" => explain::Fill::Mean,
            f => anyhow::bail!("--explain-fill '{f}': blur or mean"),
        };
        let cfg = explain::ExplainConfig {
            methods,
            method: explain::MethodConfig {
                smoothgrad_noise: self.smoothgrad_noise,
                smoothgrad_samples: self.smoothgrad_samples,
                ig_steps: self.ig_steps,
                ig_baseline,
                batch: self.explain_batch,
            },
            fill,
            pairs: self.explain_pairs,
            min_confusions: self.explain_min_confusions,
            per_pair: self.explain_per_pair,
            flagged: self.explain_flagged,
            sanity_images: self.sanity_images,
            targeted_per_pair: self.explain_attacked,
            seed: 0,
        };
        // Checked with the rest of the audit's options, before any training (AuditOptions).
        Ok(Some(cfg))
    }
}

/// How to read a dataset.
#[derive(Args, Clone)]
struct LoadArgs {
    /// Replace the labels with those of a CSV or Parquet file (columns id,label;
    /// label as class name or index).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Resize every image to HxW pixels (or NxN with one number) instead of
    /// requiring one size.
    #[arg(long, value_name = "HxW")]
    resize: Option<String>,
    /// Class names in label order, comma-separated (for Parquet files without
    /// Hugging Face metadata, or to rename classes).
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    classes: Option<Vec<String>>,
}

#[derive(Args)]
struct AuditArgs {
    /// Dataset: `demo`, a folder, a .tar/.tar.gz archive, a .parquet file, or
    /// one of those with a format prefix (cifar10-bin:, folder:, parquet:).
    #[arg(default_value = "demo")]
    dataset: String,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    attack: AttackArgs,
    #[command(flatten)]
    explain: ExplainArgs,
    #[command(flatten)]
    neighbors: NeighborArgs,
    /// Folder that holds run folders.
    #[arg(long, default_value = "outputs", value_name = "DIR")]
    outputs: PathBuf,
    /// Name of the run folder (default: the dataset's name).
    #[arg(long, value_name = "NAME")]
    run: Option<String>,
    /// Seed of every random choice of the run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    model: ModelArgs,
    /// No progress bars or per-epoch lines.
    #[arg(long, short)]
    quiet: bool,
    /// Self-check: flip this share of the training labels (seeded) before
    /// training, and report every flag and score against the flipped set.
    #[arg(long, value_name = "RATE")]
    inject_noise: Option<f64>,
    /// How injected noise picks the new label.
    /// symmetric: any other class; pairwise: the next class; confusion: in
    /// proportion to a model's test-split confusion (the imported model's, or
    /// one trained first on the clean labels).
    #[arg(long, value_enum, default_value = "symmetric")]
    noise: NoiseArg,
    /// A folder of *.toml rules to add to the shipped ones (same id: replaces).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Print only the summary, as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The model: import one, or train one (defaults: the built-in recipe for the
/// dataset, see docs/guide.md).
#[derive(Args)]
struct ModelArgs {
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
    /// Train without random-crop and flip augmentation.
    #[arg(long)]
    no_augment: bool,
    /// Training recipe for datasets other than the demo. fast: 2 folds of 20
    /// epochs whose models also predict the test split (an ensemble, with
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
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
}

impl ModelArgs {
    fn options(&self) -> Result<ModelOptions> {
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
            no_augment: self.no_augment,
            folds: self.folds,
            no_aum_threshold: self.no_aum_threshold,
            device: self.device.map(Into::into),
            recipe: self.recipe.map(|r| match r {
                RecipeArg::Fast => Recipe::Fast,
                RecipeArg::Full => Recipe::Full,
            }),
        })
    }
}

#[derive(Subcommand)]
enum DataCommand {
    /// Print what a dataset resolves to: splits, classes, sizes, ids, and every
    /// problem found. Exits non-zero when there are problems.
    Inspect {
        /// Dataset, as for `misfit audit`.
        dataset: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Write the built-in demo dataset as an image-folder archive (demo.tar.gz)
    /// with its ground truth (ground_truth.csv, planted_pairs.csv).
    Synth {
        /// Folder to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Generator seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Image side in pixels.
        #[arg(long)]
        size: Option<usize>,
        /// Clean training images per class.
        #[arg(long)]
        train_per_class: Option<usize>,
        /// Test images per class.
        #[arg(long)]
        test_per_class: Option<usize>,
    },
    /// Download a public dataset into a folder and check its checksum.
    Fetch {
        /// Which dataset (cifar10: the official CIFAR-10 binary release).
        name: String,
        /// Folder to download into.
        #[arg(long, default_value = "data", value_name = "DIR")]
        dir: PathBuf,
    },
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parse = |t: &str| t.trim().parse::<usize>().ok().filter(|&n| (1..=8192).contains(&n));
    let size = match s.split_once(['x', 'X']) {
        Some((h, w)) => parse(h).zip(parse(w)),
        None => parse(s).map(|n| (n, n)),
    };
    size.with_context(|| format!("--resize {s}: expected HxW or N, sides from 1 to 8192 pixels"))
}

fn load_options(args: &LoadArgs) -> Result<LoadOptions> {
    Ok(LoadOptions {
        resize: args.resize.as_deref().map(parse_size).transpose()?,
        classes: args.classes.clone(),
        labels: args.labels.clone(),
        progress: true,
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Audit(args) => {
            let spec = DatasetSpec::parse(&args.dataset)?;
            let opts = AuditOptions {
                attack: args.attack.config(&spec)?,
                explain: args.explain.config()?,
                spec,
                load: load_options(&args.load)?,
                outputs: args.outputs,
                run_name: args.run,
                seed: args.seed,
                model: args.model.options()?,
                progress: !args.quiet,
                inject_noise: args.inject_noise.map(|r| (r, args.noise.into())),
                scores: args.neighbors.config(PruneMethod::PruneByNoiseRate),
            };
            let rules = load_rules(&args.rules)?;
            let rules_dirs = dirs(&args.rules);
            let (dest, manifest, found) = audit::run_with_findings(&opts, Some((&rules, &rules_dirs)))?;
            let done = report::after_run(&dest, &found.expect("findings asked for"))?;
            print_summary(&manifest, &done, args.json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Data(DataCommand::Inspect { dataset, load }) => {
            let spec = DatasetSpec::parse(&dataset)?;
            let found = inspect::inspect(&spec, &load_options(&load)?)?;
            print!("{}", found.report(&spec));
            Ok(if found.problems.total == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Data(DataCommand::Synth { out, seed, size, train_per_class, test_per_class }) => {
            let mut cfg = DemoConfig::default();
            cfg.seed = seed.unwrap_or(cfg.seed);
            cfg.size = size.unwrap_or(cfg.size);
            cfg.train_per_class = train_per_class.unwrap_or(cfg.train_per_class);
            cfg.test_per_class = test_per_class.unwrap_or(cfg.test_per_class);
            if !(8..=256).contains(&cfg.size) || cfg.train_per_class == 0 {
                bail!("--size must be 8 to 256 pixels and --train-per-class at least 1");
            }
            println!("{}", synth::write(&cfg, &out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Attack { model: m, pgd_steps }) => {
            let device = model::select_device(m.device.into())?;
            bench::report_attack(&m.config(), pgd_steps, &m.python, &device)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Train(m)) => {
            let device = model::select_device(m.device.into())?;
            bench::report_train(&m.config(), m.rounds, &m.python, &device)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Score(a) => {
            let rules = load_rules(&a.rules)?;
            let files =
                byo::ScoreFiles { probs: a.probs, labels: a.labels, embeddings: a.embeddings, classes: a.classes };
            let cfg = a.neighbors.config(PruneMethod::parse(&a.prune).expect("clap checked the value"));
            let rules_dirs = dirs(&a.rules);
            let (dest, manifest, _, found) =
                byo::run_with(&files, &cfg, &a.outputs, &a.run, !a.quiet, Some((&rules, &rules_dirs)))?;
            let done = report::after_run(&dest, &found.expect("findings asked for"))?;
            print_summary(&manifest, &done, a.json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Score { n, classes, dim, embeddings, hnsw, python, dir }) => {
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("misfit-bench-{}", std::process::id())));
            bench::score::report(&dir, n, classes, dim, embeddings, hnsw, &python)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Duplicates {
            dataset,
            load,
            copies,
            random_pairs,
            seed,
            sheet,
            verdicts,
            judged,
        }) => {
            let spec = DatasetSpec::parse(&dataset)?;
            let ds = misfit::data::load(&spec, &load_options(&load)?)?;
            let (verdicts, judged) = (verdicts.as_deref(), judged.as_deref());
            bench::duplicates::report(&ds, copies, random_pairs, seed, sheet.as_deref(), verdicts, judged)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::LabelNoise { dir }) => {
            bench::label_noise::report(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Flags { run_dir, split, noise, seed, dir }) => {
            if let Some(r) = noise.iter().find(|r| !(0.0..1.0).contains(*r)) {
                anyhow::bail!("--noise {r}: each rate must be in [0, 1)");
            }
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("misfit-bench-{}", std::process::id())));
            bench::flags::report(&run_dir, &split, &noise, seed, &dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Findings(a) => {
            let severity = Severity::parse(&a.severity)
                .with_context(|| format!("--severity {}: use info, warn or error", a.severity))?;
            let rules = load_rules(&a.rules)?;
            let f = findings::run(&a.run_dir, &rules, &dirs(&a.rules))?;
            let mut shown = findings::filter(&f.frame, severity, &a.rule, a.class.as_deref())?;
            let mut summary = f.summary.clone();
            summary.rules.retain(|r| a.rule.is_empty() || a.rule.contains(&r.id));
            match a.format.as_str() {
                "table" => print!("{}", findings::overview(&shown, &summary, a.show)?),
                other => frame::write(&mut shown, Format::parse(other).expect("clap checked the value"), None)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { run_dir, rules, json } => {
            let done = report::run(&run_dir, &load_rules(&rules)?)?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&done).expect("summary serialises")),
                false => print!("{}", done.text()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ticket(a) => {
            let sel = match (a.select.finding, a.select.rule, a.select.class) {
                (Some(f), _, _) => Selection::Finding(f),
                (_, Some(r), _) => Selection::Rule(r),
                (_, _, Some(c)) => Selection::Class(c),
                _ => unreachable!("clap requires one"),
            };
            let t = ticket::write(&a.run_dir, &load_rules(&a.rules)?, &sel, a.out.as_deref(), a.force)?;
            println!(
                "ticket written to {}: {} finding{}, {} image{} ({} on the contact sheet)",
                t.dir.display(),
                t.findings,
                if t.findings == 1 { "" } else { "s" },
                t.images,
                if t.images == 1 { "" } else { "s" },
                t.on_sheet
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(a) => {
            let run = Run::open(&a.run_dir)?;
            if a.tables {
                print!("{}", query::tables(&run)?);
                return Ok(ExitCode::SUCCESS);
            }
            let sql = a.sql.as_deref().expect("clap requires SQL without --tables");
            if let Some(out) = &a.out {
                query::check_out(&run, out, a.force)?;
            }
            let mut df = query::query(&run, sql, a.allow_files)?;
            frame::write(&mut df, Format::parse(&a.format).expect("clap checked the value"), a.out.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Data(DataCommand::Fetch { name, dir }) => {
            let r = fetch::remote(&name)?;
            match fetch::fetch(r.url, r.md5, &dir, r.file, true)? {
                fetch::Fetched::AlreadyPresent(p) => println!("{} is already there, checksum verified", p.display()),
                fetch::Fetched::Downloaded(p) => println!("downloaded {} (MD5 {} verified)", p.display(), r.md5),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The shipped rules and those of `--rules DIR`, checked before any long work.
fn load_rules(dir: &Option<PathBuf>) -> Result<RuleSet> {
    Ok(RuleSet::load(dir.as_deref())?)
}

/// The end of an audit or score run: the stages' summary, then the
/// ten-second one; with `--json`, only the latter, as JSON.
fn print_summary(manifest: &misfit::run::RunManifest, done: &report::Summary, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(done).expect("summary serialises"));
    } else {
        print!("{}", summary(manifest));
        print!("\n{}", done.text());
    }
}

fn dirs(dir: &Option<PathBuf>) -> Vec<String> {
    dir.iter().map(|d| d.display().to_string()).collect()
}

/// mimalloc: the training and attack loops allocate and free tensors of megabytes
/// many times a second; glibc hands those to mmap and back, and the page
/// faults showed up as a third of the wall time (sys) on 2 cores.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// candle's CPU thread pool spins 25,000 rounds after every element-wise op
/// before it parks; on 2 cores that spinning thread takes a core from the
/// convolution threads that run next (a demo-sized training step was 10-25%
/// slower). 1,000 rounds keeps its quick hand-offs. Set before any thread
/// starts; a value in the environment wins.
const CANDLE_SPIN_LIMIT: &str = "1000";

/// mimalloc's index of its `purge_delay` option (`mi_option_e` in mimalloc
/// v3's mimalloc.h, as built by libmimalloc-sys 0.1.49, pinned in
/// Cargo.lock; the crate names only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // SAFETY: the first statement of main, before any other thread exists.
        unsafe { std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", CANDLE_SPIN_LIMIT) };
    }
    // mimalloc gives freed memory back to the OS 10 ms after it is free; a
    // training step frees and reallocates tens of megabytes of tensors, and
    // taking them back cost page faults and the kernel's zeroing of each
    // page (5-9% of a ResNet-20 step). Keep it instead: the process holds its
    // peak, which it reaches in the first step anyway. The environment's
    // MIMALLOC_PURGE_DELAY wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option value; mimalloc reads it at each purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    // Polars prints tables (`misfit query`) up to 40 rows and 60 columns,
    // 160 characters wide, unless the environment says otherwise.
    let options = [
        ("POLARS_FMT_MAX_ROWS", "40"),
        ("POLARS_FMT_MAX_COLS", "60"),
        ("POLARS_FMT_STR_LEN", "60"),
        ("POLARS_TABLE_WIDTH", "160"),
    ];
    for (key, value) in options {
        if std::env::var_os(key).is_none() {
            // SAFETY: still before any other thread exists.
            unsafe { std::env::set_var(key, value) };
        }
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", misfit::escape::terminal(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
