//! Label-quality scores: for every training image, whether its label is
//! likely wrong, whether it is ambiguous, an outlier or a duplicate, and a
//! suggested label with the evidence. Split like cleanlab: [`count`]
//! (noise estimation), [`rank`] (per-image scores), [`filter`] (which images
//! are issues); plus [`neighbors`] (HNSW over embeddings), [`duplicates`]
//! and [`combine`] (the flags). Runs from a trained model's outputs or from
//! files (`misfit score`).

pub mod combine;
pub mod count;
pub mod duplicates;
pub mod filter;
pub mod ivf;
pub mod neighbors;
pub mod rank;
pub mod selfcheck;

use serde::{Deserialize, Serialize};

pub use combine::{Flags, ImageScores, Labelled};
pub use filter::PruneMethod;

use crate::error::{Error, Problem, Result};

/// How scoring runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreConfig {
    /// Neighbours per image.
    pub k: usize,
    /// Confident-learning filter.
    pub prune: PruneMethod,
    /// HNSW settings.
    pub hnsw: neighbors::HnswConfig,
    /// Recall@k the index must reach against exact search (ef is raised until it does).
    pub recall_target: f64,
    /// Queries sampled for the recall check.
    pub recall_queries: usize,
    /// Duplicate thresholds.
    pub duplicates: duplicates::DuplicateConfig,
    /// Seed of the recall sample.
    pub seed: u64,
    /// Which index searches the neighbours.
    pub index: IndexChoice,
}

/// The neighbour index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexChoice {
    /// HNSW up to [`IVF_ABOVE`] training images, IVF above.
    #[default]
    Auto,
    Hnsw,
    Ivf,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            k: 10,
            prune: PruneMethod::PruneByNoiseRate,
            hnsw: neighbors::HnswConfig::default(),
            recall_target: 0.98,
            recall_queries: 1000,
            duplicates: duplicates::DuplicateConfig::default(),
            seed: 0,
            index: IndexChoice::Auto,
        }
    }
}

/// Embeddings of both splits: `[n, dim]` unit vectors.
#[derive(Clone, Debug)]
pub struct Embeddings<'a> {
    pub dim: usize,
    pub train: &'a [f32],
    pub test: &'a [f32],
}

/// Pixels of both splits (`[n, height, width, 3]` RGB), to find duplicates.
#[derive(Clone, Copy, Debug)]
pub struct Pixels<'a> {
    pub height: usize,
    pub width: usize,
    pub train: &'a [u8],
    pub test: &'a [u8],
}

/// What scoring is given.
#[derive(Clone, Debug)]
pub struct ScoreInput<'a> {
    /// Where the probabilities and labels came from (a file name), for error messages.
    pub source: &'a str,
    /// Number of classes.
    pub classes: usize,
    /// Given labels of the training images.
    pub train_labels: &'a [u32],
    /// Out-of-sample probabilities of the training images, `[n_train, classes]`.
    pub probs: &'a [f32],
    /// Given labels of the test images.
    pub test_labels: &'a [u32],
    /// Out-of-sample probabilities of the test images, `[n_test, classes]`,
    /// or empty when there are none (then test rows get no label columns).
    pub test_probs: &'a [f32],
    /// Embeddings, when there are any.
    pub embeddings: Option<Embeddings<'a>>,
    /// Pixels, when there are any.
    pub pixels: Option<Pixels<'a>>,
    /// Area under the margin of each training image, when training ran here.
    pub aum: Option<&'a [f32]>,
}

/// Training sets larger than this are searched with the IVF index instead of HNSW.
pub const IVF_ABOVE: usize = 200_000;

/// The recall check of the neighbour index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallReport {
    /// `hnsw` or `ivf`.
    pub index: String,
    /// Recall@k on the sampled queries at the ef (or nprobe) finally used.
    pub recall: f64,
    /// ef used for the HNSW search, or lists probed for the IVF search.
    pub ef_search: usize,
    /// Queries sampled.
    pub queries: usize,
    /// Whether the target was reached.
    pub reached_target: bool,
}

/// Everything scoring produced.
#[derive(Debug)]
pub struct Scores {
    /// Noise estimate from confident learning on the training split.
    pub noise: count::NoiseEstimate,
    /// The same on the test split, when it has probabilities.
    pub test_noise: Option<count::NoiseEstimate>,
    /// Per training image, then per test image.
    pub images: Vec<ImageScores>,
    /// Neighbours of training queries and of test queries.
    pub neighbors: Option<(neighbors::Neighbors, neighbors::Neighbors)>,
    /// Duplicate pairs.
    pub duplicates: Vec<duplicates::Pair>,
    /// The thresholds the duplicate pairs passed, when pixels were given.
    pub duplicate_cuts: Option<duplicates::Cuts>,
    /// Index recall.
    pub recall: Option<RecallReport>,
}

/// Checks the inputs of scoring; errors name the problem and the first offending row.
pub fn validate(input: &ScoreInput, cfg: &ScoreConfig) -> Result<()> {
    let (k, src) = (input.classes, input.source);
    let n = input.train_labels.len();
    check_probs(src, "", input.probs, n, k)?;
    if !input.test_probs.is_empty() {
        check_probs(src, "test ", input.test_probs, input.test_labels.len(), k)?;
    }
    let row = |i: usize, what: String| -> Error { Problem::entry(src, format!("row {i}"), what).into() };
    let mut counts = vec![0usize; k];
    for (i, &l) in input.train_labels.iter().enumerate() {
        if l as usize >= k {
            return Err(row(i, format!("label {l} is outside 0..{}", k - 1)));
        }
        counts[l as usize] += 1;
    }
    if let Some(i) = input.test_labels.iter().position(|&l| l as usize >= k) {
        return Err(row(n + i, format!("test label {} is outside 0..{}", input.test_labels[i], k - 1)));
    }
    if let Some(c) = counts.iter().position(|&c| c == 0) {
        return Err(Problem::file(src, format!("class {c} has no training sample")).into());
    }
    if let Some(e) = &input.embeddings {
        if e.train.len() != n * e.dim {
            return Err(Error::Usage(format!("embeddings hold {} values, expected {n} x {}", e.train.len(), e.dim)));
        }
        if cfg.k >= n {
            return Err(Error::Usage(format!("k = {} neighbours but only {n} training images", cfg.k)));
        }
    }
    Ok(())
}

/// Checks `[n, k]` probabilities (`what`: "" or "test "): the size, finite
/// non-negative values, rows that sum to 1.
fn check_probs(src: &str, what: &str, probs: &[f32], n: usize, k: usize) -> Result<()> {
    if probs.len() != n * k {
        return Err(Problem::file(
            src,
            format!("{what}probabilities hold {} values, expected {n} rows x {k} classes", probs.len()),
        )
        .into());
    }
    let row = |i: usize, what: String| -> Error { Problem::entry(src, format!("row {i}"), what).into() };
    for (i, p) in probs.chunks_exact(k).enumerate() {
        let s: f64 = p.iter().map(|&v| v as f64).sum();
        if p.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(row(i, format!("{what}probabilities contain NaN, infinity or a negative value")));
        }
        if (s - 1.0).abs() > 1e-3 {
            return Err(row(i, format!("{what}probabilities sum to {s:.6}, not 1 (tolerance 0.001)")));
        }
    }
    Ok(())
}

/// Scores every image: confident learning and the combined flags on each
/// split that has probabilities (the test split on its own counts, its
/// neighbours among the training images), neighbours, duplicates.
pub fn score(input: &ScoreInput, cfg: &ScoreConfig) -> Result<Scores> {
    validate(input, cfg)?;
    let k = input.classes;
    let noise = count::estimate(input.train_labels, input.probs, k);
    let issues = filter::find_label_issues(input.train_labels, input.probs, k, &noise.confident_joint, cfg.prune);
    let (test_noise, test_issues) = if input.test_probs.is_empty() {
        (None, Vec::new())
    } else {
        let (l, p) = (input.test_labels, input.test_probs);
        let est = count::estimate(l, p, k);
        let issues = filter::find_label_issues(l, p, k, &est.confident_joint, cfg.prune);
        (Some(est), issues)
    };
    let (nbrs, recall) = match &input.embeddings {
        Some(e) => {
            let (tr, te, report) = search_neighbors(e, cfg);
            (Some((tr, te)), Some(report))
        }
        None => (None, None),
    };
    let (duplicates, duplicate_cuts) = match &input.pixels {
        Some(px) => {
            let inputs = duplicates::Inputs {
                train: px.train,
                test: px.test,
                height: px.height,
                width: px.width,
                neighbors: nbrs.as_ref().map(|(tr, te)| (tr, te)),
                embeddings: input.embeddings.as_ref().map(|e| (e.train, e.test, e.dim)),
                train_pairs: true,
                labels: input.train_labels,
            };
            let found = duplicates::find(&inputs, &cfg.duplicates);
            (found.pairs, Some(found.cuts))
        }
        None => (Vec::new(), None),
    };
    let train = Labelled { labels: input.train_labels, probs: input.probs, issues: &issues };
    let test = test_noise.is_some().then_some(Labelled {
        labels: input.test_labels,
        probs: input.test_probs,
        issues: &test_issues,
    });
    let images = combine::combine(input, train, test, nbrs.as_ref(), &duplicates);
    Ok(Scores { noise, test_noise, images, neighbors: nbrs, duplicates, duplicate_cuts, recall })
}

/// Neighbours of every train and test image among the training images, by
/// HNSW (IVF above [`IVF_ABOVE`] training images), with ef (nprobe) raised,
/// doubling, until the sampled recall against exact search reaches the target.
fn search_neighbors(e: &Embeddings, cfg: &ScoreConfig) -> (neighbors::Neighbors, neighbors::Neighbors, RecallReport) {
    let dim = e.dim;
    let n_train = e.train.len() / dim;
    let n_test = e.test.len() / dim;
    let self_rows: Vec<Option<u32>> = (0..n_train as u32).map(Some).collect();
    let none = vec![None; n_test];
    // Recall sample: train queries (themselves excluded) and test queries.
    let sample = neighbors::sample_rows(n_train + n_test, cfg.recall_queries, cfg.seed);
    let mut q = Vec::with_capacity(sample.len() * dim);
    let mut q_self = Vec::with_capacity(sample.len());
    for &s in &sample {
        if s < n_train {
            q.extend_from_slice(&e.train[s * dim..(s + 1) * dim]);
            q_self.push(Some(s as u32));
        } else {
            q.extend_from_slice(&e.test[(s - n_train) * dim..(s - n_train + 1) * dim]);
            q_self.push(None);
        }
    }
    let truth = neighbors::exact(e.train, &q, dim, cfg.k, &q_self);
    let large = match cfg.index {
        IndexChoice::Auto => n_train > IVF_ABOVE,
        IndexChoice::Hnsw => false,
        IndexChoice::Ivf => true,
    };
    let (hnsw, ivf) = if large {
        (None, Some(ivf::Ivf::build(e.train, dim, cfg.seed)))
    } else {
        (Some(neighbors::Index::build(e.train, dim, &cfg.hnsw)), None)
    };
    let (mut ef, max_ef) = match &ivf {
        Some(i) => (8, i.lists()),
        None => (cfg.hnsw.ef_search, 1024),
    };
    // Same answer per query whatever else is searched: tune ef (nprobe) on the
    // sample alone, then search every image once with it.
    let search = |rows: &[f32], ef: usize, self_rows: &[Option<u32>]| match (&hnsw, &ivf) {
        (Some(h), _) => h.search(rows, dim, cfg.k, ef, self_rows),
        (_, Some(i)) => i.search(e.train, rows, cfg.k, ef, self_rows),
        _ => unreachable!("one index is built"),
    };
    let recall = loop {
        let found = search(&q, ef, &q_self);
        let hits: usize =
            (0..sample.len()).map(|j| found.of(j).iter().filter(|i| truth.of(j).contains(i)).count()).sum();
        let recall = hits as f64 / (sample.len() * cfg.k).max(1) as f64;
        if recall >= cfg.recall_target || ef >= max_ef {
            break recall;
        }
        ef = (ef * 2).min(max_ef);
    };
    let (tr, te) = (search(e.train, ef, &self_rows), search(e.test, ef, &none));
    let index = if large { "ivf" } else { "hnsw" }.to_string();
    let reached = recall >= cfg.recall_target;
    (tr, te, RecallReport { index, recall, ef_search: ef, queries: sample.len(), reached_target: reached })
}
