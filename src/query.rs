//! `misfit query`: SQL over a run's tables with Polars, and the list of
//! those tables with their columns.

use polars::prelude::DataFrame;
use std::fmt::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::run::read::Run;
use crate::run::schema;

/// Runs `sql` over every table of `run` (registered by name: `samples`,
/// `classes`, ...), after [`crate::sql::check`]: one SELECT query over the
/// run's tables; `allow_files` lets it read other files through Polars'
/// table functions (`read_parquet('...')`). Bad SQL gets Polars' message
/// and the run's tables.
pub fn query(run: &Run, sql: &str, allow_files: bool) -> Result<DataFrame> {
    let dir = run.dir().display();
    let tables = run.tables();
    crate::sql::check(sql, &tables, allow_files).map_err(|e| Error::Usage(format!("{dir}: {e}")))?;
    let mut ctx = run.sql_context()?;
    ctx.execute(sql).and_then(|lf| lf.collect()).map_err(|e| {
        Error::Usage(format!(
            "{dir}: the query failed: {e}\nthe run's tables: {} (`misfit query {dir} --tables` lists their columns)",
            tables.join(", "),
        ))
    })
}

/// Refuses `out` when it names a file already inside the run folder (a
/// table, `run.json`): a query's output does not replace the run it reads
/// unless `force`.
pub fn check_out(run: &Run, out: &Path, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    let run_dir = run.dir().canonicalize().map_err(|e| Error::io(run.dir(), e))?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // A folder that is not there: the write says so.
    let (Ok(parent), Some(name)) = (parent.canonicalize(), out.file_name()) else { return Ok(()) };
    let target = parent.join(name);
    if target.starts_with(&run_dir) && std::fs::symlink_metadata(&target).is_ok() {
        return Err(Error::Usage(format!(
            "{}: a file of the run folder {}; misfit query does not write over the run it reads (--force does)",
            out.display(),
            run.dir().display()
        )));
    }
    Ok(())
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
    Ok(crate::escape::terminal(&s))
}
