//! misfit audits an image-classification dataset and the model trained on it:
//! which training images are likely mislabeled or confusing, which classes the
//! model misses most, which classes an attacker flips most easily, and how
//! those facts connect.
//!
//! The write side: `misfit audit` ([`audit`]) runs the [`stages`] (data,
//! model, evaluate, scores, attacks, selfcheck), each owning its tables and
//! its section of `run.json`; `misfit score` ([`score`]) runs the scores stage
//! on a model's files. Both write through one run writer into a run folder
//! whose tables and columns are the contract ([`run::schema`]). The read
//! side ([`run::read`]) opens any run folder for Polars: [`findings`]
//! derives the pair and correlation tables and runs the rules of `rules/`
//! into findings, [`query`] runs a person's SQL, both checked by [`sql`] first, and
//! [`report`] renders a run with its findings. Beneath: loaders
//! ([`data`]), the ResNet ([`model`]) on its kernels ([`ops`]), training
//! ([`train`]), label-quality scores, neighbours and duplicates ([`quality`]), saliency maps ([`saliency`]), attacks ([`attack`]),
//! the small statistics ([`stats`]) and seed streams ([`seed`]).

pub mod atomic;
pub mod attack;
pub mod audit;
pub mod bench;
pub mod data;
pub mod error;
pub mod escape;
pub mod findings;
pub mod model;
pub mod ops;
pub mod progress;
pub mod quality;
pub mod query;
pub mod report;
pub mod run;
pub mod saliency;
pub mod score;
pub mod seed;
pub mod sql;
pub mod stages;
pub mod stats;
pub mod tracin;
pub mod train;

pub use error::{Error, Problem, Result};
