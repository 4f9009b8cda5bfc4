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
    /// A file a table names (a gallery image) is not there.
    #[error("{run}/{file}: no such file")]
    NoFile { run: String, file: String },
    /// A file a table names is refused: it is not a regular file inside the
    /// run folder, reached without links, of at most [`MAX_FILE_BYTES`].
    #[error("{run}: '{file}': {what}; a run folder's tables may name only regular files inside it")]
    Refused { run: String, file: String, what: String },
}

impl From<ReadError> for crate::error::Error {
    fn from(e: ReadError) -> Self {
        crate::error::Error::Run(Box::new(e))
    }
}

/// The largest file the read side reads because a table names it (a
/// gallery image is a few kilobytes).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The file `name` (as a table of the run folder `dir` names it, e.g.
/// `gallery/000123.png`) inside `dir`, checked before anything is read: a
/// relative path without `..`, no component a symbolic link, a regular
/// file (not a device, pipe, socket or folder) of at most
/// [`MAX_FILE_BYTES`].
pub fn resolve_inside(dir: &Path, name: &str) -> Result<PathBuf, ReadError> {
    use std::path::Component;
    let refuse = |what: String| ReadError::Refused {
        run: dir.display().to_string(),
        file: name.chars().map(|c| if c.is_control() { '?' } else { c }).collect(),
        what,
    };
    if name.is_empty() {
        return Err(refuse("an empty path".into()));
    }
    let mut path = dir.to_path_buf();
    let mut meta = None;
    for part in Path::new(name).components() {
        match part {
            Component::Normal(p) => path.push(p),
            Component::CurDir => continue,
            Component::ParentDir => return Err(refuse("a path with '..'".into())),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("an absolute path".into())),
        }
        let m = std::fs::symlink_metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NoFile { run: dir.display().to_string(), file: name.into() },
            _ => refuse(e.to_string()),
        })?;
        if m.file_type().is_symlink() {
            return Err(refuse(format!("{} is a symbolic link", path.display())));
        }
        meta = Some(m);
    }
    let Some(meta) = meta else { return Err(refuse("names the run folder itself".into())) };
    if !meta.file_type().is_file() {
        return Err(refuse("not a regular file (a folder, device, pipe or socket)".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(refuse(format!("{} bytes, more than the {MAX_FILE_BYTES} read from a run folder", meta.len())));
    }
    Ok(path)
}

/// The bytes of the file `name` inside the run folder `dir`, after
/// [`resolve_inside`]; reads at most [`MAX_FILE_BYTES`] even if the file
/// grows meanwhile.
pub fn read_inside(dir: &Path, name: &str) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let path = resolve_inside(dir, name)?;
    let refuse = |what: String| ReadError::Refused { run: dir.display().to_string(), file: name.into(), what };
    let file = std::fs::File::open(&path).map_err(|e| refuse(e.to_string()))?;
    if !file.metadata().map_err(|e| refuse(e.to_string()))?.is_file() {
        return Err(refuse("not a regular file (a folder, device, pipe or socket)".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| refuse(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(refuse(format!("more than the {MAX_FILE_BYTES} bytes read from a run folder")));
    }
    Ok(bytes)
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

    /// The file `name` a table of the run names, inside the run folder:
    /// see [`resolve_inside`].
    pub fn resolve(&self, name: &str) -> Result<PathBuf, ReadError> {
        resolve_inside(&self.dir, name)
    }

    /// The bytes of the file `name` a table of the run names: see [`read_inside`].
    pub fn read_file(&self, name: &str) -> Result<Vec<u8>, ReadError> {
        read_inside(&self.dir, name)
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
        // The contract names the file; it must be the run's own, not a link
        // to a file elsewhere, nor a device or pipe.
        let meta = std::fs::symlink_metadata(&path).map_err(|e| fail(&e))?;
        if meta.file_type().is_symlink() || !meta.file_type().is_file() {
            return Err(ReadError::Refused {
                run: self.dir.display().to_string(),
                file: t.file.to_string(),
                what: "a symbolic link or not a regular file".into(),
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_named_in_a_run_folder_are_read_only_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("gallery")).unwrap();
        std::fs::write(run.join("gallery/a.png"), b"png").unwrap();
        std::fs::write(dir.path().join("secret"), b"key").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), run.join("gallery/link.png")).unwrap();
        std::os::unix::fs::symlink(dir.path(), run.join("up")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", run.join("gallery/zero.png")).unwrap();
        std::fs::File::create(run.join("gallery/big.png")).unwrap().set_len(MAX_FILE_BYTES + 1).unwrap();
        let fifo = std::process::Command::new("mkfifo").arg(run.join("gallery/fifo.png")).status().unwrap();
        assert!(fifo.success());
        assert_eq!(read_inside(&run, "gallery/a.png").unwrap(), b"png");
        assert_eq!(read_inside(&run, "./gallery/a.png").unwrap(), b"png");
        let secret = dir.path().join("secret").display().to_string();
        for (name, what) in [
            (secret.as_str(), "an absolute path"),
            ("/dev/zero", "an absolute path"),
            ("../secret", "a path with '..'"),
            ("gallery/../../secret", "a path with '..'"),
            ("gallery/link.png", "is a symbolic link"),
            ("gallery/zero.png", "is a symbolic link"),
            ("up/secret", "is a symbolic link"),
            ("gallery", "not a regular file"),
            ("gallery/fifo.png", "not a regular file"),
            ("gallery/big.png", "more than the 16777216"),
            ("", "an empty path"),
            (".", "the run folder itself"),
        ] {
            let e = read_inside(&run, name).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("only regular files inside it"), "{name}: {e}");
        }
        let e = read_inside(&run, "gallery/gone.png").unwrap_err();
        assert!(matches!(e, ReadError::NoFile { .. }), "{e}");
    }

    #[test]
    fn a_table_that_is_a_link_to_a_file_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), r#"{"tables": []}"#).unwrap();
        std::fs::write(dir.path().join("elsewhere.parquet"), b"PAR1").unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere.parquet"), dir.path().join("samples.parquet")).unwrap();
        let run = Run::open(dir.path()).unwrap();
        let Err(e) = run.table("samples") else { panic!("a table linked to a file elsewhere was read") };
        let e = e.to_string();
        assert!(e.contains("'samples.parquet': a symbolic link or not a regular file"), "{e}");
    }
}
