//! `misfit report`: render report.html and report.md of a run folder again,
//! from the findings it holds.

use anyhow::Result;
use clap::Args;
use misfit::report;
use std::path::PathBuf;
use std::process::ExitCode;

use super::load_rules;

#[derive(Args)]
pub struct ReportArgs {
    /// A run folder (outputs/demo).
    run_dir: PathBuf,
    /// Findings computed in memory under the shipped rules and those of DIR
    /// (same id: replaces) instead of the run's own findings.parquet; the run
    /// is left as it is (`misfit findings --rules DIR` writes them).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: ReportArgs) -> Result<ExitCode> {
    let done = match &a.rules {
        None => report::render(&a.run_dir)?,
        Some(_) => report::run(&a.run_dir, &load_rules(&a.rules)?)?,
    };
    match a.json {
        true => println!("{}", serde_json::to_string_pretty(&done).expect("summary serialises")),
        false => print!("{}", done.text()),
    }
    Ok(ExitCode::SUCCESS)
}
