//! `misfit audit`: run the audit on a dataset.

use anyhow::Result;
use clap::Args;
use misfit::audit::{self, AuditOptions, NoiseKind};
use misfit::data::{DatasetSpec, LoadOptions};
use misfit::quality::{PruneMethod, ScoreConfig};
use misfit::report;
use std::path::PathBuf;
use std::process::ExitCode;

use super::attack::AttackArgs;
use super::explain::ExplainArgs;
use super::load::LoadArgs;
use super::model::ModelArgs;
use super::neighbors::NeighborArgs;
use super::{dirs, load_rules, print_summary};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum NoiseArg {
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

#[derive(Args)]
pub struct AuditArgs {
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
    /// Do not bound the training flags by the test labels (the bound takes
    /// the test labels as right; turn it off when they were labelled no more
    /// carefully than the training labels).
    #[arg(long)]
    no_held_out_bound: bool,
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

pub fn run(args: AuditArgs) -> Result<ExitCode> {
    let spec = DatasetSpec::parse(&args.dataset)?;
    let opts = AuditOptions {
        attack: args.attack.config(&spec)?,
        explain: args.explain.config()?,
        spec,
        load: LoadOptions::try_from(&args.load)?,
        outputs: args.outputs,
        run_name: args.run,
        seed: args.seed,
        model: args.model.options()?,
        progress: !args.quiet,
        inject_noise: args.inject_noise.map(|r| (r, args.noise.into())),
        scores: ScoreConfig {
            held_out_bound: !args.no_held_out_bound,
            ..args.neighbors.config(PruneMethod::PruneByNoiseRate)
        },
    };
    let rules = load_rules(&args.rules)?;
    let rules_dirs = dirs(&args.rules);
    let (dest, _, _) = audit::run_with_findings(&opts, Some((&rules, &rules_dirs)))?;
    let done = report::render(&dest)?;
    print_summary(&done, args.json);
    Ok(ExitCode::SUCCESS)
}
