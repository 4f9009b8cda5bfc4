//! The library's error type. Every message names the file, the entry inside it
//! (record, row, archive member) where there is one, and what is wrong.

use std::fmt;
use std::path::Path;

/// One thing wrong with one input: which file, which entry of it, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or directory, or archive) the problem was found in.
    pub file: String,
    /// The entry inside it: a record number, a row, an archive member, an image id.
    pub entry: Option<String>,
    /// What is wrong, in words.
    pub what: String,
}

impl Problem {
    /// A problem with the file as a whole.
    pub fn file(file: impl AsRef<Path>, what: impl Into<String>) -> Self {
        Problem { file: file.as_ref().display().to_string(), entry: None, what: what.into() }
    }

    /// A problem with one entry of a file.
    pub fn entry(file: impl AsRef<Path>, entry: impl Into<String>, what: impl Into<String>) -> Self {
        Problem { file: file.as_ref().display().to_string(), entry: Some(entry.into()), what: what.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(entry) => write!(f, "{}: {}: {}", self.file, entry, self.what),
            None => write!(f, "{}: {}", self.file, self.what),
        }
    }
}

/// Everything that can go wrong in the misfit library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input data: the problem names the file, the entry and what is wrong.
    #[error("{0}")]
    Input(Problem),
    /// Reading or writing a file failed. The OS error is in the message and
    /// not a `source`: `anyhow`'s `{:#}` would print its text a second time.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// A request that cannot be carried out as given (bad option, bad combination).
    #[error("{0}")]
    Usage(String),
    /// A tensor computation failed (shapes, devices, backend).
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Training produced a loss that is not a finite number.
    #[error("training diverged at epoch {epoch}, batch {batch}: the loss is {loss}; lower the learning rate (--lr) or check the data")]
    Diverged { epoch: usize, batch: usize, loss: f32 },
    /// Downloading failed or the download did not match its published checksum.
    #[error("{0}")]
    Fetch(String),
    /// A run folder could not be read (missing table, older schema): a
    /// `run::read::ReadError`, boxed so that this module, below every other,
    /// knows nothing of run folders.
    #[error(transparent)]
    Run(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::Input(p)
    }
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), error: source }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
