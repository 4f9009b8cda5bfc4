//! Label-quality scores: for every training image, whether its label is
//! likely wrong, whether it is ambiguous, an outlier or a duplicate, and a
//! suggested label with the evidence. Split like cleanlab: [`count`]
//! (noise estimation), [`rank`] (per-image scores), [`filter`] (which images
//! are issues); plus [`neighbors`] (HNSW over embeddings), [`duplicates`]
//! and [`combine`] (the flags). Runs from a trained model's outputs or from
//! files (`misfit score`).

pub mod checks;
pub mod combine;
pub mod count;
pub mod cut;
pub mod duplicates;
pub mod filter;
pub mod ivf;
pub mod neighbors;
pub mod rank;

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
    /// Bound the training flags by the test labels when both splits are out
    /// of sample ([`cut::held_out_bound`]); off with `--no-held-out-bound`.
    #[serde(default = "yes")]
    pub held_out_bound: bool,
}

fn yes() -> bool {
    true
}

/// The neighbour search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexChoice {
    /// Exact search or IVF, whichever compares fewer rows on this data at the
    /// recall target (see [`IVF_ROW_COST`]).
    #[default]
    Auto,
    /// Exact search: every query against every training row.
    Exact,
    /// HNSW graph (hnsw_rs).
    Hnsw,
    /// Inverted file over spherical k-means lists.
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
            held_out_bound: true,
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
    /// Whether the test labels are the null that bounds the training flags
    /// ([`cut::held_out_bound`]): only where `probs` are out of sample like
    /// `test_probs` (cross-validated training here) and the bound is asked for.
    pub held_out_null: bool,
    /// The null's probabilities: each fold model's own for the test images,
    /// `[models x n_test, classes]`, model after model, as strong as the
    /// training images' (each from one fold model); empty: `test_probs`.
    pub null_probs: &'a [f32],
}

/// Which neighbour search ran, and its recall check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallReport {
    /// `exact`, `hnsw` or `ivf`.
    pub index: String,
    /// Recall@k on the sampled queries at the ef (or nprobe) finally used (1 for exact search).
    pub recall: f64,
    /// ef used for the HNSW search, lists probed for the IVF search, 0 for exact search.
    pub ef_search: usize,
    /// Queries sampled (0 for exact search asked for by name: nothing to check).
    pub queries: usize,
    /// Whether the target was reached.
    pub reached_target: bool,
    /// Training rows compared per query (IVF: centroids and probed lists;
    /// None for HNSW, whose graph walk varies, and for runs before it was recorded).
    #[serde(default)]
    pub rows_per_query: Option<f64>,
    /// Why this search ran, in words (the option, or auto's comparison of the work).
    #[serde(default)]
    pub choice: String,
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
    /// Which cut made `likely_mislabeled` on the training split, and why.
    pub cut: cut::Cut,
    /// The same on the test split, when it has probabilities.
    pub test_cut: Option<cut::Cut>,
    /// Neighbours of training queries and of test queries.
    pub neighbors: Option<(neighbors::Neighbors, neighbors::Neighbors)>,
    /// Duplicate pairs.
    pub duplicates: Vec<duplicates::Pair>,
    /// The thresholds the duplicate pairs passed, when pixels were given.
    pub duplicate_cuts: Option<duplicates::Cuts>,
    /// Index recall.
    pub recall: Option<RecallReport>,
}

impl ScoreConfig {
    /// Checks the settings on their own, before any input is read.
    pub fn validate_options(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::Usage("--k 0: the neighbour vote needs at least 1 neighbour per image".into()));
        }
        if !(self.recall_target > 0.0 && self.recall_target <= 1.0) {
            return Err(Error::Usage(format!("recall target {}: must be in (0, 1]", self.recall_target)));
        }
        Ok(())
    }
}

/// A note for every class with no more training images than neighbours per
/// image: each of its images has neighbours from other classes, so its
/// neighbour vote leans away from its label.
pub fn small_class_notes(labels: &[u32], classes: &[String], k: usize) -> Vec<String> {
    let mut counts = vec![0usize; classes.len()];
    for &l in labels {
        counts[l as usize] += 1;
    }
    counts
        .iter()
        .enumerate()
        .filter(|(_, &m)| m <= k)
        .map(|(c, &m)| {
            format!(
                "class '{}' has {m} training image{}, no more than --k {k}: its images' neighbours include other \
                 classes, so their neighbour vote is weak evidence",
                classes[c],
                if m == 1 { "" } else { "s" }
            )
        })
        .collect()
}

/// Checks `[n, dim]` embeddings (`what`: "" or "test "), naming `src` and the
/// first offending row: finite values, not one vector for every row, and
/// rows that span at least 2 dimensions (rows that are all multiples of one
/// vector are one or two points once normalised: every distance would tie
/// and the neighbours would be arbitrary). A single all-zero row is
/// allowed: ReLU features of a blank image can be.
pub fn check_embeddings(src: &str, what: &str, v: &[f32], dim: usize) -> Result<()> {
    if dim == 0 {
        return Err(Problem::file(src, format!("{what}embeddings have 0 dimensions")).into());
    }
    check_finite(src, what, v, dim, 0)?;
    let first = &v[..dim.min(v.len())];
    if v.len() > dim && v.chunks_exact(dim).all(|r| r == first) {
        let which = if first.iter().all(|&x| x == 0.0) { "all zeros" } else { "the same vector" };
        return Err(Problem::file(
            src,
            format!("every {what}embedding is {which}: neighbours among them would be arbitrary"),
        )
        .into());
    }
    if v.len() > dim && spans_one_dimension(v, dim) {
        return Err(Problem::file(
            src,
            format!(
                "every {what}embedding is a multiple of one vector (the rows span 1 dimension, \
                 and at least 2 are needed): normalised, they are one or two points and \
                 neighbours among them would be arbitrary"
            ),
        )
        .into());
    }
    Ok(())
}

/// Whether every non-zero row of `[n, dim]` embeddings is a multiple of the
/// first non-zero one (cosine within 1e-6 of 1 or -1, in `f64` after scaling
/// each row by its largest absolute value). Stops at the first row that is not.
fn spans_one_dimension(v: &[f32], dim: usize) -> bool {
    let unit = |row: &[f32]| -> Option<Vec<f64>> {
        let m = row.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
        if m == 0.0 {
            return None;
        }
        let s: Vec<f64> = row.iter().map(|&x| x as f64 / m).collect();
        let n = s.iter().map(|x| x * x).sum::<f64>().sqrt();
        Some(s.into_iter().map(|x| x / n).collect())
    };
    let mut rows = v.chunks_exact(dim).filter_map(unit);
    let Some(first) = rows.next() else { return true };
    rows.all(|r| r.iter().zip(&first).map(|(a, b)| a * b).sum::<f64>().abs() >= 1.0 - 1e-6)
}

/// Checks that `[n, dim]` embeddings are finite, naming `src` and the first
/// offending row (numbered from `first_row`) and value.
fn check_finite(src: &str, what: &str, v: &[f32], dim: usize, first_row: usize) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => {
            let msg = format!("{what}embedding value {} is {}; embeddings must be finite", i % dim, v[i]);
            Err(Problem::entry(src, format!("row {}", first_row + i / dim), msg).into())
        }
        None => Ok(()),
    }
}

/// Checks the inputs of scoring; errors name the problem and the first offending row.
pub fn validate(input: &ScoreInput, cfg: &ScoreConfig) -> Result<()> {
    cfg.validate_options()?;
    let (k, src) = (input.classes, input.source);
    let n = input.train_labels.len();
    if n == 0 {
        return Err(Problem::file(src, "no rows: there is nothing to score").into());
    }
    if k < 2 {
        return Err(Problem::file(src, format!("{k} classes: label quality needs at least 2")).into());
    }
    check_probs(src, "", input.probs, n, k)?;
    if !input.test_probs.is_empty() {
        check_probs(src, "test ", input.test_probs, input.test_labels.len(), k)?;
    }
    let per_model = input.test_labels.len() * k;
    if !input.null_probs.is_empty() && (per_model == 0 || input.null_probs.len() % per_model != 0) {
        return Err(Error::Usage(format!(
            "the fold models' test probabilities hold {} values, not a multiple of {} test images x {k} classes",
            input.null_probs.len(),
            input.test_labels.len()
        )));
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
        if e.test.len() != input.test_labels.len() * e.dim {
            return Err(Error::Usage(format!(
                "test embeddings hold {} values, expected {} x {}",
                e.test.len(),
                input.test_labels.len(),
                e.dim
            )));
        }
        // Finite only: a model's features may have an all-zero row (a ReLU
        // network on a blank image); files get the full check when read.
        check_finite(src, "", e.train, e.dim, 0)?;
        check_finite(src, "test ", e.test, e.dim, n)?;
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
                test_labels: input.test_labels,
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
    let (images, cut, test_cut) = combine::combine(input, train, test, nbrs.as_ref(), &duplicates);
    Ok(Scores { noise, test_noise, images, cut, test_cut, neighbors: nbrs, duplicates, duplicate_cuts, recall })
}

/// One IVF row comparison in exact-search comparisons: the per-list matrix
/// multiplies are smaller than exact search's, each list's rows are gathered
/// first, and each probe merges into the query's running top k. Measured with
/// `misfit bench score` (docs/evaluation.md, "Bring-your-own scoring speed"); it decides, with the rows each
/// search compares on this data, which search `--index auto` runs.
pub const IVF_ROW_COST: f64 = 1.5;

/// Neighbours of every train and test image among the training images.
/// The approximate indexes tune ef (HNSW) or nprobe (IVF), doubling, on a
/// seeded sample of queries until recall@k against exact search reaches the
/// target. `auto` picks exact search or IVF by the work each does on this
/// data at that recall (rows compared per query, IVF's build included),
/// not by wall time, so that the same inputs give the same neighbours.
pub fn search_neighbors(
    e: &Embeddings,
    cfg: &ScoreConfig,
) -> (neighbors::Neighbors, neighbors::Neighbors, RecallReport) {
    let dim = e.dim;
    let n_train = e.train.len() / dim;
    let n_test = e.test.len() / dim;
    let self_rows: Vec<Option<u32>> = (0..n_train as u32).map(Some).collect();
    let none = vec![None; n_test];
    let exact_all = |why: String| {
        let tr = neighbors::exact(e.train, e.train, dim, cfg.k, &self_rows);
        let te = neighbors::exact(e.train, e.test, dim, cfg.k, &none);
        let report = RecallReport {
            index: "exact".into(),
            recall: 1.0,
            ef_search: 0,
            queries: 0,
            reached_target: true,
            rows_per_query: Some(n_train as f64),
            choice: why,
        };
        (tr, te, report)
    };
    if cfg.index == IndexChoice::Exact {
        return exact_all("--index exact".into());
    }
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
    // The smallest ef (nprobe) whose sampled recall reaches the target, with
    // the recall there: doubling from `start` up to `max`, then bisecting
    // between the last that fell short and the first that reached it (every
    // try searches only the sample).
    let tune = |search: &dyn Fn(usize) -> neighbors::Neighbors, start: usize, max: usize| -> (usize, f64) {
        let all: Vec<usize> = (0..sample.len()).collect();
        let recall_at = |ef: usize| neighbors::recall(&search(ef), &truth, &all);
        let (mut short, mut ef) = (0, start.min(max));
        let mut recall = recall_at(ef);
        while recall < cfg.recall_target && ef < max {
            short = ef;
            ef = (ef * 2).min(max);
            recall = recall_at(ef);
        }
        if recall < cfg.recall_target {
            return (ef, recall);
        }
        while ef - short > 1 {
            let mid = short + (ef - short) / 2;
            match recall_at(mid) {
                r if r >= cfg.recall_target => (ef, recall) = (mid, r),
                _ => short = mid,
            }
        }
        (ef, recall)
    };
    let report = |index: &str, recall: f64, ef: usize, rows: Option<f64>, choice: String| RecallReport {
        index: index.into(),
        recall,
        ef_search: ef,
        queries: sample.len(),
        reached_target: recall >= cfg.recall_target,
        rows_per_query: rows,
        choice,
    };
    if cfg.index == IndexChoice::Hnsw {
        let h = neighbors::Index::build(e.train, dim, &cfg.hnsw);
        let (ef, recall) = tune(&|ef| h.search(&q, dim, cfg.k, ef, &q_self), cfg.hnsw.ef_search, 1024);
        let (tr, te) = (h.search(e.train, dim, cfg.k, ef, &self_rows), h.search(e.test, dim, cfg.k, ef, &none));
        return (tr, te, report("hnsw", recall, ef, None, "--index hnsw".into()));
    }
    let ivf = ivf::Ivf::build(e.train, dim, cfg.seed);
    let (nprobe, recall) = tune(&|p| ivf.search(e.train, &q, cfg.k, p, &q_self), 8, ivf.lists());
    let rows = ivf.rows_per_query(&q, nprobe);
    let total_queries = (n_train + n_test).max(1) as f64;
    let ivf_cost = IVF_ROW_COST * rows + ivf.build_rows(n_train) / total_queries;
    let choice = match cfg.index {
        IndexChoice::Ivf => "--index ivf".to_string(),
        _ => format!(
            "auto: {} for {:.0} exact comparisons per query against ivf's {:.0} (nprobe {nprobe} of {} lists \
             at recall {recall:.3}, IVF_ROW_COST {IVF_ROW_COST}, build included)",
            if ivf_cost < n_train as f64 { "ivf" } else { "exact" },
            n_train as f64,
            ivf_cost,
            ivf.lists()
        ),
    };
    if cfg.index == IndexChoice::Auto && ivf_cost >= n_train as f64 {
        return exact_all(choice);
    }
    let (tr, te) =
        (ivf.search(e.train, e.train, cfg.k, nprobe, &self_rows), ivf.search(e.train, e.test, cfg.k, nprobe, &none));
    (tr, te, report("ivf", recall, nprobe, Some(rows), choice))
}
