//! `misfit query`: SQL over a run's tables.

use anyhow::Result;
use clap::Args;
use misfit::findings::frame::{self, Format};
use misfit::query;
use misfit::run::read::Run;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct QueryArgs {
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

pub fn run(a: QueryArgs) -> Result<ExitCode> {
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
