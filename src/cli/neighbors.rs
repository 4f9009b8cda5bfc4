//! The neighbours of every image: `--k` and `--index` (audit and score).

use clap::Args;
use misfit::quality::{IndexChoice, PruneMethod, ScoreConfig};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum IndexArg {
    Auto,
    Exact,
    Hnsw,
    Ivf,
}

impl From<IndexArg> for IndexChoice {
    fn from(i: IndexArg) -> Self {
        match i {
            IndexArg::Auto => IndexChoice::Auto,
            IndexArg::Exact => IndexChoice::Exact,
            IndexArg::Hnsw => IndexChoice::Hnsw,
            IndexArg::Ivf => IndexChoice::Ivf,
        }
    }
}

/// The neighbours of every image (scores stage).
#[derive(Args, Clone)]
pub struct NeighborArgs {
    /// Neighbours per image (the neighbour vote, outliers, neighbors.parquet).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Neighbour search: auto (whichever of exact and ivf is measured faster
    /// on this data at the recall target), or exact, hnsw, ivf.
    #[arg(long, value_enum, default_value = "auto")]
    index: IndexArg,
}

impl NeighborArgs {
    /// The scores stage's settings with these neighbours.
    pub fn config(&self, prune: PruneMethod) -> ScoreConfig {
        ScoreConfig { k: self.k, index: self.index.into(), prune, ..ScoreConfig::default() }
    }
}
