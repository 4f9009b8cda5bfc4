//! `misfit query`: SQL over a run's tables with Polars, and the list of
//! those tables with their columns.

use polars::prelude::DataFrame;
use std::fmt::Write;

use crate::error::{Error, Result};
use crate::run::read::Run;
use crate::run::schema;

/// Runs `sql` over every table of `run` (registered by name: `samples`,
/// `classes`, ...). Bad SQL gets Polars' message and the run's tables.
pub fn query(run: &Run, sql: &str) -> Result<DataFrame> {
    let mut ctx = run.sql_context()?;
    ctx.execute(sql).and_then(|lf| lf.collect()).map_err(|e| {
        Error::Usage(format!(
            "{}: the query failed: {e}\nthe run's tables: {} (`misfit query {} --tables` lists their columns)",
            run.dir().display(),
            run.tables().join(", "),
            run.dir().display()
        ))
    })
}

/// Each table of `run`: its file, what a row is, its rows, and each column
/// with its type and description (columns outside the contract, such as the
/// findings' evidence, say so).
pub fn tables(run: &Run) -> Result<String> {
    let mut s = String::new();
    for name in run.tables() {
        let t = schema::table(name).expect("the run's tables are the contract's");
        let mut lf = run.table(name)?;
        let fail = |e: polars::prelude::PolarsError| Error::Usage(format!("{}/{}: {e}", run.dir().display(), t.file));
        let columns = lf.collect_schema().map_err(fail)?;
        let rows = lf.clone().select([polars::prelude::len()]).collect().map_err(fail)?;
        let rows = crate::findings::frame::i64s(&rows, "len")?.first().copied().flatten().unwrap_or(0);
        let _ = writeln!(s, "{name} ({}, {rows} rows; one row = {})", t.file, t.row);
        for (column, dtype) in columns.iter() {
            let description = t.describe(column).map(str::to_string).unwrap_or_else(|| match name {
                "findings" => "evidence returned by a rule".to_string(),
                _ => "(not in this misfit's contract)".to_string(),
            });
            let _ = writeln!(s, "  {column:<28} {:<14} {description}", dtype.to_string());
        }
        s.push('\n');
    }
    Ok(s)
}
