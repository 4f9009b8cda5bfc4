//! `misfit ticket`: write what a data ticket needs about a finding, a rule or a class.

use anyhow::Result;
use clap::Args;
use misfit::report::ticket::{self, Selection};
use std::path::PathBuf;
use std::process::ExitCode;

use super::load_rules;

#[derive(Args)]
#[group(required = true, multiple = false, id = "about")]
pub struct TicketSelect {
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
pub struct TicketArgs {
    /// A run folder (outputs/demo).
    run_dir: PathBuf,
    #[command(flatten)]
    select: TicketSelect,
    /// The ticket's folder (default: RUN_DIR/tickets/<what>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Findings computed in memory under the shipped rules and those of DIR
    /// (same id: replaces) instead of the run's own findings.parquet.
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Replace a ticket already in the folder.
    #[arg(long)]
    force: bool,
}

pub fn run(a: TicketArgs) -> Result<ExitCode> {
    let sel = match (a.select.finding, a.select.rule, a.select.class) {
        (Some(f), _, _) => Selection::Finding(f),
        (_, Some(r), _) => Selection::Rule(r),
        (_, _, Some(c)) => Selection::Class(c),
        _ => unreachable!("clap requires one"),
    };
    let rules = match &a.rules {
        None => None,
        Some(_) => Some(load_rules(&a.rules)?),
    };
    let t = ticket::write(&a.run_dir, rules.as_ref(), &sel, a.out.as_deref(), a.force)?;
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
