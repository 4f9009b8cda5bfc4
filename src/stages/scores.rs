//! The scores stage: label quality from out-of-sample probabilities and
//! embeddings ([`crate::quality`]: confident learning, neighbours,
//! duplicates, the flags), for `misfit audit` and `misfit score` alike; the
//! tables it owns: `samples.parquet`'s score columns, `classes.parquet`'s
//! noise rate and flag counts, `embeddings.parquet`, `neighbors.parquet`,
//! `duplicates.parquet`, and `run.json`'s `scores`.

use crate::run::columns::scores::{
    CLASS_FLAGS, CLASS_FLAGS_TEST, CLASS_NOISE_INTERVAL, DUPLICATES, DUPLICATE_SIMILARITY, EMBEDDINGS, NEIGHBORS,
    SAMPLE_LABEL_ERROR, SAMPLE_SCORES,
};
use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::Samples;
use crate::quality::{
    self, checks::Check, count, duplicates::Pair, neighbors::Neighbors, ImageScores, ScoreConfig, Scores,
};
use crate::run::schema;
use crate::run::table::{Columns, TableBuilder};

/// The flags an image can carry, under the names `run.json` counts them by.
const FLAGS: [(&str, fn(&ImageScores) -> bool); 5] = [
    ("label_issue", |s| s.label_issue == Some(true)),
    ("likely_mislabeled", |s| s.flags.likely_mislabeled),
    ("ambiguous", |s| s.flags.ambiguous),
    ("outlier", |s| s.flags.outlier),
    ("duplicate", |s| s.flags.duplicate),
];

/// Images of `rows` (one split's, or every image) with each flag.
pub fn flag_counts(rows: &[ImageScores]) -> BTreeMap<String, usize> {
    FLAGS.iter().map(|(name, f)| (name.to_string(), rows.iter().filter(|s| f(s)).count())).collect()
}

/// The images of each class (`rows` and their `labels`, one split) with
/// flag `flag` (a name of [`FLAGS`]).
fn class_counts(rows: &[ImageScores], labels: &[u32], k: usize, flag: &str) -> Vec<i64> {
    let f = FLAGS.iter().find(|(n, _)| *n == flag).expect("a known flag").1;
    let mut v = vec![0i64; k];
    for (img, &l) in rows.iter().zip(labels) {
        v[l as usize] += f(img) as i64;
    }
    v
}

/// `samples.parquet`'s score columns, one row per image (train then test).
pub fn sample_columns(classes: &[String], s: &[ImageScores]) -> Columns {
    let name = |l: Option<u32>| l.map(|l| classes[l as usize].as_str());
    TableBuilder::new(&SAMPLE_SCORES)
        .opt_bool("label_issue", s.iter().map(|x| x.label_issue))
        .opt_f64("normalized_margin", s.iter().map(|x| x.normalized_margin))
        .opt_f64("confidence_weighted_entropy", s.iter().map(|x| x.confidence_weighted_entropy))
        .opt_f64("neighbor_agreement", s.iter().map(|x| x.neighbor_agreement))
        .opt_i32("neighbor_label", s.iter().map(|x| x.neighbor_label.map(|l| l as i32)))
        .opt_utf8("neighbor_label_name", s.iter().map(|x| name(x.neighbor_label)))
        .opt_f32("kth_distance", s.iter().map(|x| x.kth_distance))
        .opt_f64("outlier_percentile", s.iter().map(|x| x.outlier_percentile))
        .opt_f64("issue_score", s.iter().map(|x| x.issue_score))
        .opt_i32("suggested_label", s.iter().map(|x| x.suggested_label.map(|l| l as i32)))
        .opt_utf8("suggested_label_name", s.iter().map(|x| name(x.suggested_label)))
        .opt_f64("suggested_confidence", s.iter().map(|x| x.suggested_confidence))
        .bool("likely_mislabeled", s.iter().map(|x| x.flags.likely_mislabeled))
        .bool("ambiguous", s.iter().map(|x| x.flags.ambiguous))
        .bool("outlier", s.iter().map(|x| x.flags.outlier))
        .bool("duplicate", s.iter().map(|x| x.flags.duplicate))
        .opt_utf8("evidence", s.iter().map(|x| x.evidence.as_deref()))
        .finish()
}

/// `samples.parquet`'s label-error probability, one row per image (train then test).
pub fn label_error_columns(s: &[ImageScores]) -> Columns {
    TableBuilder::new(&SAMPLE_LABEL_ERROR)
        .opt_f64("label_error_probability", s.iter().map(|x| x.label_error_probability))
        .finish()
}

/// `classes.parquet`'s noise rate and flag counts of the training images.
pub fn class_columns(sc: &Scores, train_labels: &[u32], k: usize) -> Columns {
    let count = |flag| class_counts(&sc.images[..train_labels.len()], train_labels, k, flag);
    TableBuilder::new(&CLASS_FLAGS)
        .f64("estimated_noise_rate", sc.noise.noise_rate.iter().copied())
        .i64("label_issues", count("label_issue"))
        .i64("likely_mislabeled", count("likely_mislabeled"))
        .i64("ambiguous", count("ambiguous"))
        .i64("outliers", count("outlier"))
        .i64("duplicates", count("duplicate"))
        .finish()
}

/// `classes.parquet`'s noise rate and flag counts of the test images, when
/// the test split was scored (`n_train` training rows come first).
pub fn test_class_columns(sc: &Scores, n_train: usize, test_labels: &[u32], k: usize) -> Option<Columns> {
    let noise = sc.test_noise.as_ref()?;
    let count = |flag| class_counts(&sc.images[n_train..], test_labels, k, flag);
    let mut present = vec![false; k];
    for &l in test_labels {
        present[l as usize] = true;
    }
    let rate = noise.noise_rate.iter().zip(&present).map(|(&r, &p)| p.then_some(r));
    Some(
        TableBuilder::new(&CLASS_FLAGS_TEST)
            .opt_f64("estimated_noise_rate_test", rate)
            .i64("label_issues_test", count("label_issue"))
            .i64("likely_mislabeled_test", count("likely_mislabeled"))
            .i64("ambiguous_test", count("ambiguous"))
            .i64("outliers_test", count("outlier"))
            .i64("duplicates_test", count("duplicate"))
            .finish(),
    )
}

/// `classes.parquet`'s interval of the noise rate: confident learning's
/// estimate on 200 seeded resamples of the training images (`labels`,
/// `probs` `[n, k]`), 2.5% and 97.5% quantiles per class.
pub fn noise_interval_columns(labels: &[u32], probs: &[f32], k: usize, seed: u64) -> Columns {
    let (lo, hi) = count::noise_rate_interval(labels, probs, k, 200, crate::seed::noise_rate_bootstrap(seed));
    TableBuilder::new(&CLASS_NOISE_INTERVAL)
        .opt_f64("estimated_noise_rate_low", lo)
        .opt_f64("estimated_noise_rate_high", hi)
        .finish()
}

/// `embeddings.parquet`: `[n_train, dim]` and `[n_test, dim]` unit vectors.
pub fn embeddings(s: &Samples, train: &[f32], test: &[f32], dim: usize) -> RecordBatch {
    let ids = s.train_ids.iter().chain(s.test_ids);
    let splits = std::iter::repeat_n("train", s.train_ids.len()).chain(std::iter::repeat_n("test", s.test_ids.len()));
    TableBuilder::new(&EMBEDDINGS)
        .utf8("id", ids)
        .utf8("split", splits)
        .f32_rows("vector", [train, test].concat(), dim)
        .finish_table(&schema::EMBEDDINGS)
}

/// `neighbors.parquet` from the neighbours of the training and the test queries.
pub fn neighbors(s: &Samples, train_nb: &Neighbors, test_nb: &Neighbors) -> RecordBatch {
    let k = train_nb.k;
    let queries: Vec<&String> = s.train_ids.iter().chain(s.test_ids).collect();
    let idx: Vec<u32> = train_nb.index.iter().chain(&test_nb.index).copied().collect();
    let dist: Vec<f32> = train_nb.distance.iter().chain(&test_nb.distance).copied().collect();
    let label = |j: u32| s.train_labels[j as usize];
    TableBuilder::new(&NEIGHBORS)
        .utf8("id", (0..idx.len()).map(|r| queries[r / k].as_str()))
        .i32("rank", (0..idx.len()).map(|r| (r % k) as i32 + 1))
        .utf8("neighbor_id", idx.iter().map(|&j| s.train_ids[j as usize].as_str()))
        .f32("distance", dist)
        .i32("neighbor_label", idx.iter().map(|&j| label(j) as i32))
        .utf8("neighbor_label_name", idx.iter().map(|&j| s.classes[label(j) as usize].as_str()))
        .finish_table(&schema::NEIGHBORS)
}

/// `duplicates.parquet`.
pub fn duplicates(s: &Samples, pairs: &[Pair]) -> RecordBatch {
    let b = |p: &Pair| (s.ids(p.b_split())[p.b].as_str(), s.labels_of(p.b_split())[p.b]);
    let main = TableBuilder::new(&DUPLICATES)
        .utf8("id_a", pairs.iter().map(|p| s.train_ids[p.a].as_str()))
        .utf8("id_b", pairs.iter().map(|p| b(p).0))
        .utf8("split_a", pairs.iter().map(|_| "train"))
        .utf8("split_b", pairs.iter().map(|p| p.b_split().as_str()))
        .opt_f32("embedding_distance", pairs.iter().map(|p| p.embedding_distance))
        .f32("pixel_distance", pairs.iter().map(|p| p.pixel_distance))
        .utf8("kind", pairs.iter().map(|p| p.kind.as_str()))
        .bool("same_label", pairs.iter().map(|p| s.train_labels[p.a] == b(p).1))
        .finish();
    let similarity = TableBuilder::new(&DUPLICATE_SIMILARITY)
        .f32("similarity", pairs.iter().map(|p| p.similarity))
        .f32("detail", pairs.iter().map(|p| p.detail))
        .finish();
    crate::run::table::assemble(&schema::DUPLICATES, vec![main, similarity])
}

/// What `run.json` says of the label-quality stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoresSummary {
    pub config: ScoreConfig,
    /// Neighbour-index recall@k against exact search.
    pub recall: Option<quality::RecallReport>,
    /// Confident learning's per-class noise rates, and its noise matrix p(given | true).
    pub noise_rate: Vec<f64>,
    pub noise_matrix: Vec<Vec<f64>>,
    /// Training images with each flag.
    pub flagged: BTreeMap<String, usize>,
    /// Test images with each flag, when the test split was scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged_test: Option<BTreeMap<String, usize>>,
    /// Confident learning's per-class noise rates on the test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_rate_test: Option<Vec<f64>>,
    /// Duplicate pairs found.
    pub duplicate_pairs: usize,
    /// The similarity thresholds the duplicate pairs passed (raised by the null sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_cuts: Option<quality::duplicates::Cuts>,
    /// Flags and scores against known bad images (planted or injected problems).
    pub selfcheck: Vec<Check>,
    /// Which cut made `likely_mislabeled` on the training split, and why
    /// (absent in runs written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mislabeled_cut: Option<quality::cut::Cut>,
    /// The same on the test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mislabeled_cut_test: Option<quality::cut::Cut>,
}

impl crate::run::Section for ScoresSummary {
    const KEY: &'static str = "scores";
}

impl ScoresSummary {
    pub fn new(s: &Scores, cfg: &ScoreConfig, n_train: usize, selfcheck: Vec<Check>) -> Self {
        ScoresSummary {
            config: cfg.clone(),
            recall: s.recall.clone(),
            noise_rate: s.noise.noise_rate.clone(),
            noise_matrix: s.noise.noise_matrix.clone(),
            flagged: flag_counts(&s.images[..n_train]),
            flagged_test: s.test_noise.as_ref().map(|_| flag_counts(&s.images[n_train..])),
            noise_rate_test: s.test_noise.as_ref().map(|t| t.noise_rate.clone()),
            duplicate_pairs: s.duplicates.len(),
            duplicate_cuts: s.duplicate_cuts,
            selfcheck,
            mislabeled_cut: Some(s.cut.clone()),
            mislabeled_cut_test: s.test_cut.clone(),
        }
    }
}

/// The scores stage: label quality from out-of-sample probabilities and
/// embeddings (an audit's model stage's, or those a `misfit score` run was
/// [`Given`]), checked against what is known to be wrong (the demo's
/// planted problems, `--inject-noise`'s flips).
pub struct Score<'c> {
    /// Neighbours per image, the index, the cuts (its seed is the run's).
    pub config: &'c ScoreConfig,
}

/// What a `misfit score` run was given, as the scores stage reads it: the
/// probabilities' file (named in messages) and the embeddings,
/// L2-normalised, `[n, dim]` (written as `embeddings.parquet`).
pub struct Given {
    pub source: String,
    pub embeddings: Option<(Vec<f32>, usize)>,
}

/// What the scores stage made.
pub struct Scored {
    pub scores: Scores,
    /// The configuration it ran with (the run's seed in it).
    pub config: ScoreConfig,
    /// The model's features of both splits, L2-normalised, `[n, dim]`, and
    /// `dim` (an audit's; a score run's embeddings are [`Given`]'s).
    pub embeddings: Option<(Vec<f32>, Vec<f32>, usize)>,
    /// The self-check (None when nothing is known to be wrong).
    pub checks: Option<Vec<Check>>,
    /// Training images (the first rows of every per-sample list).
    pub n_train: usize,
    /// What the user should know about the flags.
    pub notes: Vec<String>,
}

impl super::Stage for Score<'_> {
    fn name(&self) -> &'static str {
        "scores"
    }

    fn line(&self, _run: &super::RunState) -> Option<&'static str> {
        Some("scores (neighbours, duplicates, confident learning)")
    }

    fn run(
        &self,
        run: &super::RunState,
        _writer: &crate::run::RunWriter,
    ) -> crate::error::Result<Option<Box<dyn super::Made>>> {
        let s = &run.samples;
        let (k, n_train) = (s.classes.len(), s.n_train());
        let config = ScoreConfig { seed: run.seed, ..self.config.clone() };
        let probs = &run.outputs.probs;
        let made = match run.get::<super::model::ModelStage>() {
            Some(model) => {
                let dim = model.model.config.feature_dim();
                let train = quality::neighbors::normalize(&model.train_features, dim);
                let test = quality::neighbors::normalize(&model.test_features, dim);
                let aum = model.aum();
                let null_probs: Vec<f32> = model
                    .fold_test_logits
                    .iter()
                    .flat_map(|l| l.chunks_exact(k).flat_map(crate::stats::softmax))
                    .map(|p| p as f32)
                    .collect();
                let input = quality::ScoreInput {
                    source: "the model's probabilities",
                    classes: k,
                    train_labels: s.train_labels,
                    probs: &probs[..n_train * k],
                    test_labels: s.test_labels,
                    test_probs: &probs[n_train * k..],
                    embeddings: Some(quality::Embeddings { dim, train: &train, test: &test }),
                    pixels: run.dataset.map(|ds| quality::Pixels {
                        height: ds.height,
                        width: ds.width,
                        train: &ds.train.pixels,
                        test: &ds.test.pixels,
                    }),
                    aum: aum.as_deref(),
                    held_out_null: model.fold.is_some() && self.config.held_out_bound,
                    null_probs: &null_probs,
                };
                let mut notes = quality::small_class_notes(s.train_labels, s.classes, config.k);
                let scores = quality::score(&input, &config)?;
                if let Some(r) = &scores.recall {
                    if !r.reached_target {
                        notes.push(format!(
                            "{} recall@{} is {:.3} at ef/nprobe {} (target {}): neighbours may be missing",
                            r.index, config.k, r.recall, r.ef_search, config.recall_target
                        ));
                    }
                }
                if model.fold.is_none() && !s.test_labels.is_empty() {
                    notes.push(
                        "training-image probabilities are in sample (imported model): their flags are weak \
                         evidence; the test split's flags, from out-of-sample probabilities, are the primary \
                         label audit"
                            .to_string(),
                    );
                }
                let loaded = run.get::<super::data::Loaded>();
                let known = super::selfcheck::Known {
                    truth: loaded.and_then(|l| l.truth.as_ref()),
                    injected: loaded.and_then(|l| l.injected.as_deref()),
                };
                let checks = run.dataset.and_then(|ds| {
                    super::selfcheck::run(ds, &known, &scores, aum.as_deref(), model.aum_threshold.as_ref())
                });
                Scored { scores, config, embeddings: Some((train, test, dim)), checks, n_train, notes }
            }
            None => {
                let given = run.get::<Given>().expect("a score run's inputs are read before its scores");
                let input = quality::ScoreInput {
                    source: &given.source,
                    classes: k,
                    train_labels: s.train_labels,
                    probs,
                    test_labels: &[],
                    test_probs: &[],
                    embeddings: given.embeddings.as_ref().map(|(e, d)| quality::Embeddings {
                        dim: *d,
                        train: e,
                        test: &[],
                    }),
                    pixels: None,
                    aum: None,
                    held_out_null: true,
                    null_probs: &[],
                };
                let notes = match given.embeddings {
                    Some(_) => quality::small_class_notes(s.train_labels, s.classes, config.k),
                    None => Vec::new(),
                };
                let scores = quality::score(&input, &config)?;
                Scored { scores, config, embeddings: None, checks: None, n_train, notes }
            }
        };
        if let Some(o) = run.overall {
            o.advance(crate::progress::SCORE_UNITS * run.samples.len() as f64);
        }
        Ok(Some(Box::new(made)))
    }
}

impl super::Made for Given {
    fn write(&self, run: &super::RunState, writer: &mut crate::run::RunWriter) -> crate::error::Result<()> {
        if let Some((e, d)) = &self.embeddings {
            writer.write(&schema::EMBEDDINGS, &embeddings(&run.samples, e, &[], *d))?;
        }
        Ok(())
    }
}

impl super::Made for Scored {
    fn sample_columns(&self, run: &super::RunState) -> Vec<Columns> {
        vec![sample_columns(run.samples.classes, &self.scores.images), label_error_columns(&self.scores.images)]
    }

    fn class_columns(&self, run: &super::RunState) -> Vec<Columns> {
        let s = &run.samples;
        let (k, n_train) = (s.classes.len(), s.n_train());
        let mut parts = vec![
            class_columns(&self.scores, s.train_labels, k),
            noise_interval_columns(s.train_labels, &run.outputs.probs[..n_train * k], k, self.config.seed),
        ];
        parts.extend(test_class_columns(&self.scores, n_train, s.test_labels, k));
        parts
    }

    fn write(&self, run: &super::RunState, writer: &mut crate::run::RunWriter) -> crate::error::Result<()> {
        let s = &run.samples;
        if let Some((train, test, dim)) = &self.embeddings {
            writer.write(&schema::EMBEDDINGS, &embeddings(s, train, test, *dim))?;
        }
        if let Some((tr, te)) = &self.scores.neighbors {
            writer.write(&schema::NEIGHBORS, &neighbors(s, tr, te))?;
        }
        // Duplicates are found in the images: a run without them (`misfit score`) has no such table.
        if run.dataset.is_some() {
            writer.write(&schema::DUPLICATES, &duplicates(s, &self.scores.duplicates))?;
        }
        if let Some(c) = &self.checks {
            writer.write(&schema::SELFCHECK, &super::selfcheck::table(c))?;
        }
        Ok(())
    }

    fn section(&self, manifest: &mut crate::run::RunManifest) {
        let checks = self.checks.clone().unwrap_or_default();
        manifest.set(&ScoresSummary::new(&self.scores, &self.config, self.n_train, checks));
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
