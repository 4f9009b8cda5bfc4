//! The stages of an audit, one file each, in the order they run: [`data`]
//! (load), [`model`] (train or import), [`evaluate`] (test split),
//! [`scores`] (label quality, embeddings, neighbours, duplicates, and the
//! [`selfcheck`] against known problems), [`attacks`], [`explain`]
//! (saliency, sanity and occlusion checks, pair attacks), [`influence`]
//! (training images behind test mistakes) and [`gallery`]. Each owns the
//! column groups of the tables it writes (listed together in
//! [`crate::run::schema`]) and its section of `run.json`.
//!
//! One shape for all: a [`Stage`] runs on the run so far ([`RunState`])
//! and returns what it made, a [`Made`], which gives its columns of the
//! shared tables, writes its own tables and files and sets its section.
//! `misfit audit` ([`crate::audit`]) runs the list after the model;
//! `misfit score` ([`crate::score`]) the scores stage alone, through the same
//! run writer ([`crate::run::RunWriter`]).

pub mod attacks;
pub mod data;
pub mod evaluate;
pub mod explain;
pub mod gallery;
pub mod influence;
pub mod model;
pub mod scores;
pub mod selfcheck;

use crate::data::{Dataset, Split};

/// The ids and given labels of a run's samples by split: what the per-image
/// tables key on. Sample rows are train rows first, then test rows.
#[derive(Clone, Copy, Debug)]
pub struct Samples<'a> {
    pub classes: &'a [String],
    pub train_ids: &'a [String],
    pub train_labels: &'a [u32],
    pub test_ids: &'a [String],
    pub test_labels: &'a [u32],
}

impl<'a> Samples<'a> {
    /// A dataset's samples.
    pub fn of(ds: &'a Dataset) -> Self {
        Samples {
            classes: &ds.classes,
            train_ids: &ds.train.ids,
            train_labels: &ds.train.labels,
            test_ids: &ds.test.ids,
            test_labels: &ds.test.labels,
        }
    }

    /// Training samples.
    pub fn n_train(&self) -> usize {
        self.train_ids.len()
    }

    /// All samples.
    pub fn len(&self) -> usize {
        self.train_ids.len() + self.test_ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample row of row `row` of `split`.
    pub fn row(&self, split: Split, row: usize) -> usize {
        match split {
            Split::Train => row,
            Split::Test => self.n_train() + row,
        }
    }

    /// The split and row in it of sample row `row` (the inverse of [`Samples::row`]).
    pub fn locate(&self, row: usize) -> (Split, usize) {
        match row.checked_sub(self.n_train()) {
            Some(r) => (Split::Test, r),
            None => (Split::Train, row),
        }
    }

    /// The id of sample row `row`.
    pub fn id(&self, row: usize) -> &'a str {
        let (split, r) = self.locate(row);
        &self.ids(split)[r]
    }

    /// The ids of one split's samples.
    pub fn ids(&self, split: Split) -> &'a [String] {
        match split {
            Split::Train => self.train_ids,
            Split::Test => self.test_ids,
        }
    }

    /// The given labels of one split's samples.
    pub fn labels_of(&self, split: Split) -> &'a [u32] {
        match split {
            Split::Train => self.train_labels,
            Split::Test => self.test_labels,
        }
    }

    /// Given labels of every sample, train then test.
    pub fn labels(&self) -> Vec<u32> {
        self.train_labels.iter().chain(self.test_labels).copied().collect()
    }
}

/// What the stages of one run share as it goes: the dataset and its
/// samples, every sample's outputs of the model, and what each stage made
/// (found by type: a stage reads what the earlier ones made).
pub struct RunState<'a> {
    /// The samples, train rows first.
    pub samples: Samples<'a>,
    /// Their images (with injected noise where asked); None for `misfit
    /// score`, which is given probabilities only: the stages that need
    /// images do not apply to it.
    pub dataset: Option<&'a Dataset>,
    /// Every sample's probabilities, prediction, loss and margin.
    pub outputs: evaluate::SampleOutputs,
    /// The run's seed.
    pub seed: u64,
    /// Progress lines and bars on standard error.
    pub progress: bool,
    /// The whole run's progress and time left.
    pub overall: Option<&'a crate::progress::Overall>,
    /// What each stage made, in the order they ran.
    made: Vec<Box<dyn Made>>,
}

impl<'a> RunState<'a> {
    /// A run of `samples` (with their images in `dataset`, where there
    /// are images) whose model gave `outputs`, with what was made before
    /// the list of stages (the data and model stages, or the files read).
    pub fn new(
        samples: Samples<'a>,
        dataset: Option<&'a Dataset>,
        outputs: evaluate::SampleOutputs,
        seed: u64,
        progress: bool,
        overall: Option<&'a crate::progress::Overall>,
        made: Vec<Box<dyn Made>>,
    ) -> Self {
        RunState { samples, dataset, outputs, seed, progress, overall, made }
    }

    /// What a stage made, of type `T` (None when no stage of the run made one).
    pub fn get<T: Made>(&self) -> Option<&T> {
        self.made.iter().find_map(|m| (m.as_ref() as &dyn std::any::Any).downcast_ref::<T>())
    }

    /// Takes what a stage made, of type `T`, out of the run (after the run is written).
    pub fn take<T: Made>(&mut self) -> Option<T> {
        let i = self.made.iter().position(|m| (m.as_ref() as &dyn std::any::Any).is::<T>())?;
        let made: Box<dyn std::any::Any> = self.made.remove(i);
        made.downcast::<T>().ok().map(|m| *m)
    }

    /// Everything made so far, in order.
    pub fn made(&self) -> &[Box<dyn Made>] {
        &self.made
    }

    /// Runs `stages` in order, each after the line it shows; returns each
    /// stage's wall time in seconds, by its name.
    pub fn run_all(
        &mut self,
        stages: &[&dyn Stage],
        writer: &crate::run::RunWriter,
    ) -> crate::error::Result<Vec<(&'static str, f64)>> {
        let mut timing = Vec::new();
        for stage in stages {
            if let (true, Some(line)) = (self.progress, stage.line(self)) {
                match self.overall {
                    Some(o) => eprintln!("{line} ({})", o.status()),
                    None => eprintln!("{line}"),
                }
            }
            let started = std::time::Instant::now();
            if let Some(made) = stage.run(self, writer)? {
                self.made.push(made);
            }
            timing.push((stage.name(), started.elapsed().as_secs_f64()));
        }
        Ok(timing)
    }

    /// Every stage's notes, in order.
    pub fn notes(&self) -> Vec<String> {
        self.made.iter().flat_map(|m| m.notes()).collect()
    }

    /// `samples.parquet`: every stage's columns, in the contract's order.
    pub fn samples_table(&self) -> arrow::array::RecordBatch {
        let parts = self.made.iter().flat_map(|m| m.sample_columns(self)).collect();
        crate::run::table::assemble(&crate::run::schema::SAMPLES, parts)
    }

    /// `classes.parquet`: every stage's columns, in the contract's order.
    pub fn classes_table(&self) -> arrow::array::RecordBatch {
        let parts = self.made.iter().flat_map(|m| m.class_columns(self)).collect();
        crate::run::table::assemble(&crate::run::schema::CLASSES, parts)
    }

    /// Writes `samples.parquet`, `classes.parquet`, then each stage's own
    /// tables and files, and sets each stage's section of `manifest`.
    pub fn write(
        &self,
        writer: &mut crate::run::RunWriter,
        manifest: &mut crate::run::RunManifest,
    ) -> crate::error::Result<()> {
        // The two shared tables built side by side (the largest of a run).
        let (samples, classes) = rayon::join(|| self.samples_table(), || self.classes_table());
        writer.write_all(vec![(&crate::run::schema::SAMPLES, samples), (&crate::run::schema::CLASSES, classes)])?;
        for m in &self.made {
            m.write(self, writer)?;
        }
        for m in &self.made {
            m.section(manifest);
        }
        Ok(())
    }
}

/// One stage of a run: what it needs comes from the run so far
/// ([`RunState`]), what it makes goes back into it ([`Made`]). A new stage
/// is one file with its type and this trait, and one entry in the list
/// that `misfit audit` or `misfit score` runs.
pub trait Stage {
    /// Its name: its key in `run.json`'s `timing_s`.
    fn name(&self) -> &'static str;

    /// The line shown before it runs (None: none).
    fn line(&self, _run: &RunState) -> Option<&'static str> {
        None
    }

    /// Runs it on the run so far (files it makes as it goes, such as
    /// images, go under `writer`'s folder); None when it does not apply to
    /// this run.
    fn run(&self, run: &RunState, writer: &crate::run::RunWriter) -> crate::error::Result<Option<Box<dyn Made>>>;
}

/// What a stage made, and how it goes into the run folder: its columns of
/// `samples.parquet` and `classes.parquet`, its own tables and files, its
/// section of `run.json`, the notes it has for the user.
pub trait Made: std::any::Any + Send + Sync {
    /// Its columns of `samples.parquet` (one row per sample, train rows first).
    fn sample_columns(&self, _run: &RunState) -> Vec<crate::run::table::Columns> {
        Vec::new()
    }

    /// Its columns of `classes.parquet` (one row per class).
    fn class_columns(&self, _run: &RunState) -> Vec<crate::run::table::Columns> {
        Vec::new()
    }

    /// Writes its own tables and files.
    fn write(&self, _run: &RunState, _writer: &mut crate::run::RunWriter) -> crate::error::Result<()> {
        Ok(())
    }

    /// Sets its section of `run.json`.
    fn section(&self, _manifest: &mut crate::run::RunManifest) {}

    /// What the user should know (notes in `run.json` and the summary).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}
