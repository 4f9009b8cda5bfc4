//! `misfit report`: render report.html and report.md of a run folder again.

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
    /// A folder of *.toml rules to add to the shipped ones (same id: replaces).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: ReportArgs) -> Result<ExitCode> {
    let done = report::run(&a.run_dir, &load_rules(&a.rules)?)?;
    match a.json {
        true => println!("{}", serde_json::to_string_pretty(&done).expect("summary serialises")),
        false => print!("{}", done.text()),
    }
    Ok(ExitCode::SUCCESS)
}
