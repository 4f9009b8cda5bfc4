//! The read side of the run folder: opens any run (an audit's, a
//! `misfit score` run, one written by an older misfit) and hands its tables
//! to Polars as lazy frames by table name, checked against the contract
//! ([`super::schema`]). Findings, rules, `misfit query` and the report read
//! runs through here, never through the writer's types, so that they work
//! on every run folder alike.

use polars::prelude::{LazyFrame, PlRefPath, ScanArgsParquet};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::manifest::{RunManifest, MANIFEST};
use super::schema::{self, TableSchema};

/// What can go wrong reading a run folder; every message names the run
/// folder, and the table where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The folder has no `run.json`.
    #[error("{run}: not a misfit run folder (no {MANIFEST}); `misfit audit` or `misfit score` writes one")]
    NotARun { run: String },
    /// `run.json` cannot be read.
    #[error("{run}/{MANIFEST}: {what}")]
    Manifest { run: String, what: String },
    /// The run has no such table.
    #[error("{run}: no table '{table}' in this run ({why}); it has: {present}")]
    Missing { run: String, table: String, why: String, present: String },
    /// The table lacks columns the contract has: an older misfit wrote it.
    #[error(
        "{run}/{file}: written by {writer}, whose {file} has no column {missing}; re-run the audit with this misfit ({current}) to get them"
    )]
    OlderSchema { run: String, file: String, writer: String, missing: String, current: String },
    /// Polars could not read the table.
    #[error("{run}/{file}: {what}")]
    Unreadable { run: String, file: String, what: String },
}

/// An open run folder.
#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    manifest: serde_json::Value,
    /// Tables `run.json` lists, by file name.
    listed: BTreeSet<String>,
}

impl Run {
    /// Opens the run folder `dir` (it must hold a `run.json`).
    pub fn open(dir: impl AsRef<Path>) -> Result<Run, ReadError> {
        let dir = dir.as_ref().to_path_buf();
        let run = dir.display().to_string();
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            return Err(ReadError::NotARun { run });
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ReadError::Manifest { run: run.clone(), what: e.to_string() })?;
        let manifest: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ReadError::Manifest { run: run.clone(), what: format!("not JSON: {e}") })?;
        let listed = manifest
            .get("tables")
            .and_then(|t| t.as_array())
            .ok_or_else(|| ReadError::Manifest { run, what: "no 'tables' list".into() })?
            .iter()
            .filter_map(|t| t.get("file").and_then(|f| f.as_str()).map(str::to_string))
            .collect();
        Ok(Run { dir, manifest, listed })
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The version of misfit that wrote the run.
    pub fn version(&self) -> &str {
        self.manifest.get("misfit_version").and_then(|v| v.as_str()).unwrap_or("(unknown)")
    }

    /// `run.json` as JSON, whatever version wrote it.
    pub fn manifest_json(&self) -> &serde_json::Value {
        &self.manifest
    }

    /// `run.json` as this misfit's typed manifest (None when an older or
    /// newer misfit wrote a manifest of another shape).
    pub fn manifest(&self) -> Option<RunManifest> {
        serde_json::from_value(self.manifest.clone()).ok()
    }

    /// The names of the contract's tables this run has, in contract order.
    pub fn tables(&self) -> Vec<&'static str> {
        schema::TABLES.iter().filter(|t| self.dir.join(t.file).is_file()).map(|t| t.name).collect()
    }

    /// Whether the run has table `name`.
    pub fn has(&self, name: &str) -> bool {
        schema::table(name).is_some_and(|t| self.dir.join(t.file).is_file())
    }

    /// Table `name` (`samples`, or `samples.parquet`) as a lazy frame, after
    /// checking its columns against the contract: each stage's group of
    /// columns is there whole or not at all, and the key columns are there.
    pub fn table(&self, name: &str) -> Result<LazyFrame, ReadError> {
        self.require(name, &[])
    }

    /// Table `name` as [`Run::table`] gives it, with at least `columns` (a
    /// reader's needs): a run without one of them says which, and which
    /// misfit wrote the run.
    pub fn require(&self, name: &str, columns: &[&str]) -> Result<LazyFrame, ReadError> {
        let t = self.schema_of(name)?;
        let (lf, present) = self.scan(t)?;
        for (i, g) in t.groups.iter().enumerate() {
            let missing: Vec<&str> = g.names().filter(|n| !present.contains(*n)).collect();
            // The key group must be whole; any other group whole or absent.
            if !missing.is_empty() && (i == 0 || missing.len() < g.columns.len()) {
                return Err(self.older(t, &missing));
            }
        }
        let missing: Vec<&str> = columns.iter().copied().filter(|c| !present.contains(*c)).collect();
        if !missing.is_empty() {
            return Err(self.older(t, &missing));
        }
        Ok(lf)
    }

    /// Every table of the run registered by name in a Polars SQL context.
    pub fn sql_context(&self) -> Result<polars::sql::SQLContext, ReadError> {
        let ctx = polars::sql::SQLContext::new();
        for name in self.tables() {
            ctx.register(name, self.table(name)?);
        }
        Ok(ctx)
    }

    fn schema_of(&self, name: &str) -> Result<&'static TableSchema, ReadError> {
        let present = || self.tables().join(", ");
        let missing = |why: &str| ReadError::Missing {
            run: self.dir.display().to_string(),
            table: name.to_string(),
            why: why.to_string(),
            present: present(),
        };
        let t = schema::table(name).ok_or_else(|| missing("misfit writes no table of that name"))?;
        if !self.dir.join(t.file).is_file() {
            return Err(if self.listed.contains(t.file) {
                missing("run.json lists it, but the file is gone")
            } else {
                missing("the stage that writes it did not run, or does not apply to this run")
            });
        }
        Ok(t)
    }

    fn scan(&self, t: &TableSchema) -> Result<(LazyFrame, BTreeSet<String>), ReadError> {
        let path = self.dir.join(t.file);
        let fail = |e: &dyn std::fmt::Display| ReadError::Unreadable {
            run: self.dir.display().to_string(),
            file: t.file.to_string(),
            what: e.to_string(),
        };
        let p = PlRefPath::try_from_path(&path).map_err(|e| fail(&e))?;
        let mut lf = LazyFrame::scan_parquet(p, ScanArgsParquet::default()).map_err(|e| fail(&e))?;
        let columns = lf.collect_schema().map_err(|e| fail(&e))?.iter_names().map(|n| n.to_string()).collect();
        Ok((lf, columns))
    }

    fn older(&self, t: &TableSchema, missing: &[&str]) -> ReadError {
        ReadError::OlderSchema {
            run: self.dir.display().to_string(),
            file: t.file.to_string(),
            writer: match self.version() {
                v if v == env!("CARGO_PKG_VERSION") => format!("an earlier build of misfit {v}"),
                v => format!("misfit {v}"),
            },
            missing: missing.join(", "),
            current: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}
