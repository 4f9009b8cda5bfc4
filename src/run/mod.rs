//! The run folder, `outputs/<run-name>/`: the contract between the write
//! side (`misfit audit`, `misfit score`) and the read side (findings,
//! queries, reports). [`schema`] lists every table and column, [`RunWriter`]
//! writes a run's tables and its typed `run.json` ([`manifest`]) atomically,
//! [`read`] opens any run folder for Polars, [`summary`] prints one.
//!
//! A run is written into `outputs/.<run-name>.partial-<pid>/` and renamed into
//! place when complete, replacing the previous run of that name: a crash
//! leaves the previous run whole, and the next run of that name removes what
//! the crash left. `outputs/.<run-name>.lock` keeps two processes from
//! writing one run at once.

pub mod columns;
pub mod manifest;
pub mod read;
pub mod schema;
pub mod table;

use arrow::array::RecordBatch;
use std::path::{Path, PathBuf};

pub use manifest::{RunManifest, Section, SectionError, TableEntry, MANIFEST};

use crate::error::{Error, Result};
use schema::TableSchema;
use table::TableMeta;

/// A run folder being written.
#[derive(Debug)]
pub struct RunDir {
    partial: PathBuf,
    dest: PathBuf,
    /// Held while the run is written: a second writer of the same name is refused.
    _lock: RunLock,
}

/// An exclusive lock on a run name: `outputs/.<run-name>.lock`, locked while
/// a process writes the run (or trains for it) and removed when it is done.
/// The operating system drops the lock of a killed process, so a lock file
/// left behind by a kill is taken over by the next run.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    file: std::fs::File,
}

impl RunLock {
    /// Takes the lock of run `name` under `outputs`, or says that another
    /// process is writing that run.
    pub fn take(outputs: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(outputs).map_err(|e| Error::io(outputs, e))?;
        let path = outputs.join(format!(".{name}.lock"));
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Usage(format!(
                        "{}: run '{name}' is being written by another misfit process; wait for it, or give another --run name",
                        outputs.join(name).display()
                    )))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            // The holder before us may have removed the file between our open
            // and our lock: then we hold a lock on a file no one else sees.
            if same_file(&file, &path) {
                return Ok(RunLock { path, file });
            }
        }
    }
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::File, path: &Path) -> bool {
    path.exists()
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked, so that no one locks the old file after us.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Removes what killed writers of run `name` left under `outputs` (their
/// `.<name>.partial-<pid>` and `.<name>.old-<pid>` folders); called with the
/// run's lock held, so no live process owns them. Returns how many.
fn remove_stale(outputs: &Path, name: &str) -> Result<usize> {
    let (partial, old) = (format!(".{name}.partial-"), format!(".{name}.old-"));
    let mut removed = 0;
    let entries = std::fs::read_dir(outputs).map_err(|e| Error::io(outputs, e))?;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let rest = file_name.strip_prefix(&partial).or_else(|| file_name.strip_prefix(&old));
        if rest.is_some_and(|pid| !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit())) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Checks that a run name is a plain folder name.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "run name '{name}' must be a plain folder name: letters, digits, '-', '_', '.', '+', not starting with '.'"
        )))
    }
}

impl RunDir {
    /// Starts a run named `name` under `outputs`. A folder of that name that
    /// is not a misfit run (no `run.json`) is never replaced.
    pub fn create(outputs: &Path, name: &str) -> Result<Self> {
        check_name(name)?;
        let dest = outputs.join(name);
        if dest.exists() && !dest.join(MANIFEST).is_file() {
            return Err(Error::Usage(format!(
                "{} exists and is not a misfit run (no {MANIFEST}); choose another --run name",
                dest.display()
            )));
        }
        let lock = RunLock::take(outputs, name)?;
        let stale = remove_stale(outputs, name)?;
        if stale > 0 {
            eprintln!(
                "note: removed {stale} unfinished folder{} of an earlier '{name}' run that was killed",
                if stale == 1 { "" } else { "s" }
            );
        }
        let partial = outputs.join(format!(".{name}.partial-{}", std::process::id()));
        std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        Ok(RunDir { partial, dest, _lock: lock })
    }

    /// Where a file of the run is written while the run is under way.
    pub fn path(&self, file: &str) -> PathBuf {
        self.partial.join(file)
    }

    /// Where the run will be once committed.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Writes `run.json` and moves the run into place, replacing the previous
    /// run of that name.
    pub fn commit(self, manifest: &RunManifest) -> Result<PathBuf> {
        self.commit_with(manifest, |_| Ok(())).map(|(dest, ())| dest)
    }

    /// Writes `run.json`, runs `before` on the complete run where it is
    /// written (the findings), then moves the run into place, replacing the
    /// previous run of that name: when `before` fails, the previous run
    /// stays as it was and the new one is removed.
    pub fn commit_with<T>(
        self,
        manifest: &RunManifest,
        before: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<(PathBuf, T)> {
        crate::atomic::write(self.partial.join(MANIFEST), manifest.to_json().as_bytes())?;
        let done = before(&self.partial)?;
        let old = self.dest.with_file_name(format!(
            ".{}.old-{}",
            self.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            std::process::id()
        ));
        let had_old = self.dest.exists();
        if had_old {
            std::fs::rename(&self.dest, &old).map_err(|e| Error::io(&self.dest, e))?;
        }
        std::fs::rename(&self.partial, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        if had_old {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok((self.dest.clone(), done))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // Still here means the run did not complete: leave no partial run behind.
        if self.partial.exists() {
            let _ = std::fs::remove_dir_all(&self.partial);
        }
    }
}

/// The one writer of a run folder, for `misfit audit` and `misfit score`:
/// tables go into the partial folder as the stages hand them over, each
/// recorded for `run.json`; [`RunWriter::commit`] writes the manifest and
/// moves the run into place.
pub struct RunWriter {
    dir: RunDir,
    meta: TableMeta,
    tables: Vec<TableEntry>,
}

impl RunWriter {
    /// Starts run `name` under `outputs`; every table carries `meta`.
    pub fn create(outputs: &Path, name: &str, meta: TableMeta) -> Result<Self> {
        Ok(RunWriter { dir: RunDir::create(outputs, name)?, meta, tables: Vec::new() })
    }

    /// Where a file of the run (not a table: a model, images) is written while the run is under way.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path(file)
    }

    /// Writes `batch` as the table `table` of the contract.
    pub fn write(&mut self, table: &'static TableSchema, batch: &RecordBatch) -> Result<()> {
        table::write(&self.dir.path(table.file), batch, &self.meta)?;
        self.tables.push(TableEntry { file: table.file.into(), rows: batch.num_rows(), row: table.row.into() });
        Ok(())
    }

    /// Writes several tables of the contract at once, one thread each; they
    /// are recorded in the order given.
    pub fn write_all(&mut self, tables: Vec<(&'static TableSchema, RecordBatch)>) -> Result<()> {
        use rayon::prelude::*;
        tables
            .par_iter()
            .map(|(t, batch)| table::write(&self.dir.path(t.file), batch, &self.meta))
            .collect::<Result<()>>()?;
        for (t, batch) in &tables {
            self.tables.push(TableEntry { file: t.file.into(), rows: batch.num_rows(), row: t.row.into() });
        }
        Ok(())
    }

    /// Records the tables written in `manifest`, writes it as `run.json` and
    /// moves the run into place.
    pub fn commit(self, manifest: &mut RunManifest) -> Result<PathBuf> {
        manifest.tables = self.tables;
        self.dir.commit(manifest)
    }

    /// As [`RunWriter::commit`], with `before` run on the complete run
    /// before it is moved into place: see [`RunDir::commit_with`].
    pub fn commit_with<T>(
        self,
        manifest: &mut RunManifest,
        before: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<(PathBuf, T)> {
        manifest.tables = self.tables;
        self.dir.commit_with(manifest, before)
    }
}
