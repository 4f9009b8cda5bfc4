//! How to read a dataset: `--labels`, `--resize`, `--classes` (audit, data inspect, bench duplicates).

use anyhow::{Context, Result};
use clap::Args;
use misfit::data::LoadOptions;
use std::path::PathBuf;

/// How to read a dataset.
#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Replace the labels with those of a CSV or Parquet file (columns id,label;
    /// label as class name or index).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Resize every image to HxW pixels (or NxN with one number) instead of
    /// requiring one size.
    #[arg(long, value_name = "HxW")]
    resize: Option<String>,
    /// Class names in label order, comma-separated (for Parquet files without
    /// Hugging Face metadata, or to rename classes).
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    classes: Option<Vec<String>>,
}

/// `--resize HxW` or `--resize N`.
fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parse = |t: &str| t.trim().parse::<usize>().ok().filter(|&n| (1..=8192).contains(&n));
    let size = match s.split_once(['x', 'X']) {
        Some((h, w)) => parse(h).zip(parse(w)),
        None => parse(s).map(|n| (n, n)),
    };
    size.with_context(|| format!("--resize {s}: expected HxW or N, sides from 1 to 8192 pixels"))
}

impl TryFrom<&LoadArgs> for LoadOptions {
    type Error = anyhow::Error;

    fn try_from(args: &LoadArgs) -> Result<LoadOptions> {
        Ok(LoadOptions {
            resize: args.resize.as_deref().map(parse_size).transpose()?,
            classes: args.classes.clone(),
            labels: args.labels.clone(),
            progress: true,
        })
    }
}
