//! The command line's arguments: the top-level `Cli` and its commands, one
//! file per command (its arguments and its `run`), the argument groups
//! several commands share (load, model, attack, explain, neighbours), and the
//! process tuning set up before anything runs (`process`).

pub mod attack;
pub mod audit;
pub mod bench;
pub mod data;
pub mod explain;
pub mod findings;
pub mod load;
pub mod model;
pub mod neighbors;
pub mod process;
pub mod query;
pub mod report;
pub mod score;
pub mod ticket;

use anyhow::Result;
use clap::{Parser, Subcommand};
use misfit::findings::RuleSet;
use std::path::PathBuf;

/// Audit an image-classification dataset and its model: likely mislabeled
/// images, most-missed classes, most-attacked classes, and how they connect.
#[derive(Parser)]
#[command(name = "misfit", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the audit on a dataset (the built-in demo when none is given).
    Audit(audit::AuditArgs),
    /// Look at, make or download datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Score labels from your own model's outputs (bring your own model):
    /// out-of-sample probabilities and labels, optionally embeddings, from
    /// Parquet or .npy.
    Score(score::ScoreArgs),
    /// Measure speed against PyTorch (or cleanlab) on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the rules over a run folder: write pairs.parquet,
    /// correlations.parquet and findings.parquet into it, and print the findings.
    Findings(findings::FindingsArgs),
    /// SQL over a run's tables (Polars SQL; tables by name: samples, classes, ...).
    Query(query::QueryArgs),
    /// Render report.html and report.md of a run folder again.
    Report(report::ReportArgs),
    /// Write what a data ticket needs about a finding, a rule or a class:
    /// ticket.md, images.csv and contact_sheet.png.
    Ticket(ticket::TicketArgs),
}

/// The shipped rules and those of `--rules DIR`, checked before any long work.
fn load_rules(dir: &Option<PathBuf>) -> Result<RuleSet> {
    Ok(RuleSet::load(dir.as_deref())?)
}

/// The end of an audit or score run: the summary; with `--json`, its
/// ten-second part, as JSON.
fn print_summary(done: &misfit::report::Summary, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(done).expect("summary serialises"));
    } else {
        print!("{}", done.text());
    }
}

/// `--rules DIR` as the run's manifest records it.
fn dirs(dir: &Option<PathBuf>) -> Vec<String> {
    dir.iter().map(|d| d.display().to_string()).collect()
}
