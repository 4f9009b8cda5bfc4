//! The stages of an audit, one file each, in the order they run: [`data`]
//! (load), [`model`] (train or import), [`evaluate`] (test split),
//! [`scores`] (label quality, embeddings, neighbours, duplicates),
//! [`attacks`], [`explain`] (saliency, sanity and occlusion checks, pair
//! attacks), [`influence`] (training images behind test mistakes),
//! [`gallery`] and [`selfcheck`]. Each owns the column groups of the tables
//! it writes (listed together in [`crate::run::schema`]) and its section of
//! `run.json`; `misfit audit` ([`crate::audit`]) runs them all and
//! `misfit score` ([`crate::byo`]) the scores stage alone, through the same
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
