//! `misfit findings`: run the rules over a run folder and print the findings.

use anyhow::{Context, Result};
use clap::Args;
use misfit::findings::frame::{self, Format};
use misfit::findings::{self, Severity};
use std::path::PathBuf;
use std::process::ExitCode;

use super::{dirs, load_rules};

#[derive(Args)]
pub struct FindingsArgs {
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

pub fn run(a: FindingsArgs) -> Result<ExitCode> {
    let severity =
        Severity::parse(&a.severity).with_context(|| format!("--severity {}: use info, warn or error", a.severity))?;
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
