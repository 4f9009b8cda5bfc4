//! `misfit score`: score labels from your own model's outputs.

use anyhow::Result;
use clap::Args;
use misfit::quality::PruneMethod;
use misfit::report;
use misfit::score;
use std::path::PathBuf;
use std::process::ExitCode;

use super::neighbors::NeighborArgs;
use super::{dirs, load_rules, print_summary};

#[derive(Args)]
pub struct ScoreArgs {
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

pub fn run(a: ScoreArgs) -> Result<ExitCode> {
    let rules = load_rules(&a.rules)?;
    let files = misfit::data::probs::ScoreFiles {
        probs: a.probs,
        labels: a.labels,
        embeddings: a.embeddings,
        classes: a.classes,
    };
    let cfg = a.neighbors.config(PruneMethod::parse(&a.prune).expect("clap checked the value"));
    let rules_dirs = dirs(&a.rules);
    let (dest, _, _, _) = score::run_with(&files, &cfg, &a.outputs, &a.run, !a.quiet, Some((&rules, &rules_dirs)))?;
    let done = report::render(&dest)?;
    print_summary(&done, a.json);
    Ok(ExitCode::SUCCESS)
}
