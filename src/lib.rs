//! misfit audits an image-classification dataset and the model trained on it:
//! which training images are likely mislabeled or confusing, which classes the
//! model misses most, which classes an attacker flips most easily, and how
//! those facts connect.
//!
//! Data flows forward through one module per stage:
//! [`data`] (load) -> [`tables`] (Parquet) -> [`run`] (output folder), driven
//! by [`audit`]. Later stages (model, scores, attacks, explanations, rules,
//! report) slot in between.

pub mod atomic;
pub mod attack;
pub mod audit;
pub mod bench;
pub mod byo;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod model;
pub mod ops;
pub mod progress;
pub mod run;
pub mod scores;
pub mod seed;
pub mod stats;
pub mod tables;
pub mod train;

pub use error::{Error, Problem, Result};
