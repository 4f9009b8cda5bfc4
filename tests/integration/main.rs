//! Integration tests, one binary (one link) for all: each module tests one
//! capability on real bytes that the tests write themselves, or on ../shared.

mod attack;
mod byo;
mod cifar_bin;
mod cli;
mod demo;
mod duplicates;
mod explain;
mod fetch;
mod findings;
mod fixture;
mod flags;
mod folder;
mod fuzz;
mod hf_parquet;
mod hostile;
mod influence;
mod labels;
mod model;
mod ops;
mod report;
mod run_contract;
mod shared;
mod train;
mod util;
