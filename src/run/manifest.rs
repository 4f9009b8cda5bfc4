//! `run.json`: what a run was given, what it wrote, what it noticed. One
//! typed manifest for `misfit audit` and `misfit score`; each stage fills
//! its own section, and sections a run has no data for are left out.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest file's name.
pub const MANIFEST: &str = "run.json";

/// One table a run wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// File name inside the run folder.
    pub file: String,
    /// Rows written.
    pub rows: usize,
    /// What one row is.
    pub row: String,
}

/// A section of `run.json` that one stage (or command) owns: its key and
/// its serde shape. The contract stores sections as JSON and knows none of
/// their types; each owner implements this beside its type.
pub trait Section: Serialize + DeserializeOwned {
    /// The section's key in `run.json` (`"model"`, `"scores"`, ...).
    const KEY: &'static str;
}

/// A section of `run.json` that does not have its owner's shape.
#[derive(Debug, thiserror::Error)]
#[error("{MANIFEST}: section '{key}': {what}")]
pub struct SectionError {
    /// The section's key.
    pub key: &'static str,
    /// What is wrong with it.
    pub what: String,
}

/// `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// Version of misfit that wrote the run.
    pub misfit_version: String,
    /// The run's name (its folder's name).
    pub run_name: String,
    /// Tables written, in order.
    pub tables: Vec<TableEntry>,
    /// Things noticed while loading and auditing (left-out files, missing splits).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Demo only: planted problems per kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planted: Option<BTreeMap<String, usize>>,
    /// Wall time of each stage, in seconds.
    #[serde(default)]
    pub timing_s: BTreeMap<String, f64>,
    /// Every other section, by key, as its owner wrote it ([`Section`]):
    /// `config` (the run's configuration as given), `dataset` or `inputs`
    /// (what was audited or scored), `model`, `evaluation`, `scores`,
    /// `attacks`, `explain`, `influence`, `findings`; a section a run has
    /// no data for is left out.
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

impl RunManifest {
    /// A manifest with the given configuration (a [`Section`] keyed `config`) and nothing else yet.
    pub fn new<C: Section>(run_name: &str, config: &C) -> Self {
        let mut m = RunManifest {
            misfit_version: env!("CARGO_PKG_VERSION").to_string(),
            run_name: run_name.to_string(),
            tables: Vec::new(),
            notes: Vec::new(),
            planted: None,
            timing_s: BTreeMap::new(),
            sections: BTreeMap::new(),
        };
        m.set(config);
        m
    }

    /// `run.json`'s text. Through a JSON value, as misfit has always written
    /// it: keys in sorted order, f32 figures as their exact f64 widening.
    pub fn to_json(&self) -> String {
        let value = serde_json::to_value(self).expect("manifest serialises");
        serde_json::to_string_pretty(&value).expect("manifest serialises")
    }

    /// Sets section `S` (replacing any earlier one).
    pub fn set<S: Section>(&mut self, section: &S) {
        let value = serde_json::to_value(section).expect("a manifest section serialises");
        self.sections.insert(S::KEY.to_string(), value);
    }

    /// Sets section `S` when there is one.
    pub fn set_some<S: Section>(&mut self, section: Option<&S>) {
        if let Some(s) = section {
            self.set(s);
        }
    }

    /// Section `S`: None when the run has none, an error when it has one of another shape.
    pub fn section<S: Section>(&self) -> Result<Option<S>, SectionError> {
        match self.sections.get(S::KEY) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| SectionError { key: S::KEY, what: e.to_string() }),
        }
    }
}
