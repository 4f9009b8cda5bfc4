//! The data stage: the loaded dataset (the demo's planted ground truth with
//! it), and the columns it owns: `samples.parquet`'s key columns,
//! `classes.parquet`'s image counts, `planted.parquet`, and the dataset
//! section of `run.json`.

use crate::run::columns::data::{CLASS_COUNTS, PLANTED, SAMPLE_KEYS};
use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

use super::Samples;
use crate::data::demo::{self, DemoTruth, ProblemKind};
use crate::data::{self, Dataset, DatasetSpec, LoadOptions, Problems, Split};
use crate::error::Result;
use crate::run::schema;
use crate::run::table::{Columns, TableBuilder};

/// What the data stage produced.
pub struct DataStage {
    pub dataset: Dataset,
    /// The demo's planted problems (None for other datasets, or when a
    /// labels file replaced the demo's labels).
    pub truth: Option<DemoTruth>,
}

/// Loads the dataset; the demo is generated with its ground truth. Notes go to `problems`.
pub fn load(spec: &DatasetSpec, opts: &LoadOptions, problems: &mut Problems) -> Result<DataStage> {
    let (dataset, truth) = match spec {
        DatasetSpec::Demo(cfg) => {
            let d = demo::generate(cfg);
            let keep_truth = opts.labels.is_none();
            if !keep_truth {
                problems.note("a labels file replaced the demo's labels: its planted ground truth is not reported");
            }
            (data::finish(d.dataset, spec, opts)?, keep_truth.then_some(d.truth))
        }
        spec => (data::load_with(spec, opts, problems)?, None),
    };
    Ok(DataStage { dataset, truth })
}

/// The key columns of every sample, train rows then test rows.
pub fn sample_keys(s: &Samples) -> Columns {
    let rows = || {
        Split::ALL.into_iter().flat_map(|split| s.ids(split).iter().zip(s.labels_of(split)).map(move |r| (split, r)))
    };
    TableBuilder::new(&SAMPLE_KEYS)
        .utf8("id", rows().map(|(_, (id, _))| id))
        .utf8("split", rows().map(|(split, _)| split.as_str()))
        .i32("label", rows().map(|(_, (_, &l))| l as i32))
        .utf8("label_name", rows().map(|(_, (_, &l))| s.classes[l as usize].as_str()))
        .finish()
}

/// Each class with its training and test image counts.
pub fn class_counts(s: &Samples) -> Columns {
    let k = s.classes.len();
    let count = |split| {
        let mut n = vec![0i64; k];
        for &l in s.labels_of(split) {
            n[l as usize] += 1;
        }
        n
    };
    TableBuilder::new(&CLASS_COUNTS)
        .i32("class", (0..k).map(|i| i as i32))
        .utf8("class_name", s.classes.iter())
        .i64("train_images", count(Split::Train))
        .i64("test_images", count(Split::Test))
        .finish()
}

/// `planted.parquet`.
pub fn planted(truth: &DemoTruth) -> RecordBatch {
    let p = &truth.problems;
    TableBuilder::new(&PLANTED)
        .utf8("id", p.iter().map(|x| x.id.as_str()))
        .utf8("split", p.iter().map(|x| x.split.as_str()))
        .utf8("problem", p.iter().map(|x| x.kind.as_str()))
        .i32("given_label", p.iter().map(|x| x.given_label as i32))
        .opt_i32("true_label", p.iter().map(|x| x.true_label.map(|l| l as i32)))
        .opt_utf8("related_id", p.iter().map(|x| x.related_id.as_deref()))
        .finish_table(&schema::PLANTED)
}

/// Planted problems per kind (`run.json`).
pub fn planted_counts(truth: &DemoTruth) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for p in &truth.problems {
        *counts.entry(p.kind.as_str().to_string()).or_insert(0) += 1;
    }
    counts
}

/// Which of `ids` carry a planted problem of `kind`.
pub fn planted_rows(truth: &DemoTruth, ids: &[String], kind: ProblemKind) -> Vec<bool> {
    let planted: HashSet<&str> = truth.problems.iter().filter(|p| p.kind == kind).map(|p| p.id.as_str()).collect();
    ids.iter().map(|id| planted.contains(id.as_str())).collect()
}

/// What the dataset of a run was (`run.json`'s `dataset`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// The dataset argument as given (`demo`, a path).
    pub spec: String,
    /// What was loaded, in words.
    pub source: String,
    /// SHA-256 over classes, ids, labels and pixels.
    pub fingerprint: String,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Images per split.
    pub images: BTreeMap<String, usize>,
    /// Images per split and class, in label order.
    pub per_class: BTreeMap<String, Vec<usize>>,
}

impl crate::run::Section for DatasetSummary {
    const KEY: &'static str = "dataset";
}

impl DatasetSummary {
    /// The summary of `ds`, loaded from `spec`, whose [`Dataset::fingerprint`]
    /// the caller has already computed (a pass over every pixel).
    pub fn new(spec: &str, ds: &Dataset, fingerprint: String) -> Self {
        let mut images = BTreeMap::new();
        let mut per_class = BTreeMap::new();
        for split in Split::ALL {
            let set = ds.split(split);
            images.insert(split.as_str().to_string(), set.len());
            per_class.insert(split.as_str().to_string(), set.class_counts(ds.classes.len()));
        }
        DatasetSummary {
            spec: spec.to_string(),
            source: ds.source.clone(),
            fingerprint,
            classes: ds.classes.clone(),
            height: ds.height,
            width: ds.width,
            images,
            per_class,
        }
    }
}

/// What the data stage made, beside the dataset itself (which every stage
/// reads from [`super::RunState::dataset`]): the demo's planted problems,
/// the labels `--inject-noise` flipped, the dataset's section.
pub struct Loaded {
    /// The demo's planted problems (None for other datasets).
    pub truth: Option<DemoTruth>,
    /// Training rows whose labels `--inject-noise` flipped (None: none injected).
    pub injected: Option<Vec<bool>>,
    /// `run.json`'s `dataset`.
    pub summary: DatasetSummary,
    /// What loading noticed (left-out files, missing splits).
    pub notes: Vec<String>,
}

impl super::Made for Loaded {
    fn sample_columns(&self, run: &super::RunState) -> Vec<Columns> {
        vec![sample_keys(&run.samples)]
    }

    fn class_columns(&self, run: &super::RunState) -> Vec<Columns> {
        vec![class_counts(&run.samples)]
    }

    fn write(&self, _run: &super::RunState, writer: &mut crate::run::RunWriter) -> Result<()> {
        if let Some(t) = &self.truth {
            writer.write(&schema::PLANTED, &planted(t))?;
        }
        Ok(())
    }

    fn section(&self, manifest: &mut crate::run::RunManifest) {
        manifest.set(&self.summary);
        manifest.planted = self.truth.as_ref().map(planted_counts);
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
