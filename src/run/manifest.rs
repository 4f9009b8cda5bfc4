//! `run.json`: what a run was given, what it wrote, what it noticed. One
//! typed manifest for `misfit audit` and `misfit score`; each stage fills
//! its own section, and sections a run has no data for are left out.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::attack::AttackSummary;
use crate::stages::data::DatasetSummary;
use crate::stages::evaluate::Evaluation;
use crate::stages::model::ModelSummary;
use crate::stages::scores::ScoresSummary;

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

/// The run's configuration, as given: an audit's or a score run's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunConfig {
    Audit(crate::audit::AuditConfig),
    Score(crate::byo::ScoreRunConfig),
}

/// What a `misfit score` run read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreInputs {
    /// Samples scored (rows of the probabilities).
    pub samples: usize,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Length of the embeddings, when given.
    pub embedding_dim: Option<usize>,
}

/// `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// Version of misfit that wrote the run.
    pub misfit_version: String,
    /// The run's name (its folder's name).
    pub run_name: String,
    /// The dataset (audit runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSummary>,
    /// The files scored (score runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<ScoreInputs>,
    /// The run's configuration, as given.
    pub config: RunConfig,
    /// Tables written, in order.
    pub tables: Vec<TableEntry>,
    /// Things noticed while loading and auditing (left-out files, missing splits).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Demo only: planted problems per kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planted: Option<BTreeMap<String, usize>>,
    /// The model: how it was made (trained or imported), its configuration,
    /// the training recipe and device, the last epoch of every training job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSummary>,
    /// Test-split accuracy, per-class miss rates with 95% Wilson intervals, confusion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// Label-quality scoring: neighbour recall, noise estimate, flag counts, self-check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<ScoresSummary>,
    /// Attacks: overall and per-class success per attack and budget, radii.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacks: Option<AttackSummary>,
    /// Explanations: the pairs and images explained, the ring's width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<crate::stages::explain::ExplainSummary>,
    /// Influence of training images on test mistakes: the checkpoints summed
    /// (one, and which model, or several with their learning rates), counts, time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influence: Option<crate::stages::influence::InfluenceSummary>,
    /// The findings: what each rule did, findings by severity (written by
    /// the findings after the run is in place, `misfit findings` again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<crate::findings::FindingsSummary>,
    /// Wall time of each stage, in seconds.
    #[serde(default)]
    pub timing_s: BTreeMap<String, f64>,
}

impl RunManifest {
    /// A manifest with the given configuration and nothing else yet.
    pub fn new(run_name: &str, config: RunConfig) -> Self {
        RunManifest {
            misfit_version: env!("CARGO_PKG_VERSION").to_string(),
            run_name: run_name.to_string(),
            dataset: None,
            inputs: None,
            config,
            tables: Vec::new(),
            notes: Vec::new(),
            planted: None,
            model: None,
            evaluation: None,
            scores: None,
            attacks: None,
            explain: None,
            influence: None,
            findings: None,
            timing_s: BTreeMap::new(),
        }
    }

    /// Class names in label order (the dataset's, or the scored files').
    pub fn classes(&self) -> &[String] {
        match (&self.dataset, &self.inputs) {
            (Some(d), _) => &d.classes,
            (_, Some(i)) => &i.classes,
            _ => &[],
        }
    }
}
