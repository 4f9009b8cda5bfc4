//! `misfit score`: bring your own model. Scores labels from files instead of
//! a model trained here ([`crate::data::probs`] reads them), so that a team
//! with a model in any framework gets the same label-quality audit: the
//! scores stage of the audit, run through the same run writer.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::probs::{load, ScoreFiles};
use crate::error::{Error, Result};
use crate::quality::{self, ScoreConfig};
use crate::run::table::{self, TableMeta};
use crate::run::{RunManifest, RunWriter};
use crate::stages::{self, evaluate, scores as score_stage, RunState, Samples, Stage};

/// What a `misfit score` run read: `run.json`'s `inputs` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreInputs {
    /// Samples scored (rows of the probabilities).
    pub samples: usize,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Length of the embeddings, when given.
    pub embedding_dim: Option<usize>,
}

impl crate::run::Section for ScoreInputs {
    const KEY: &'static str = "inputs";
}

/// What a `misfit score` run read, as the first thing it made: the samples'
/// key columns and the given probabilities' columns (prediction, loss,
/// margin), the classes' counts and mean confidence, the `inputs` section.
struct Read(ScoreInputs);

impl stages::Made for Read {
    fn sample_columns(&self, run: &RunState) -> Vec<table::Columns> {
        let n = run.samples.len();
        vec![
            stages::data::sample_keys(&run.samples),
            stages::model::sample_columns(run.samples.classes, &run.outputs, &vec![None; n], None),
        ]
    }

    fn class_columns(&self, run: &RunState) -> Vec<table::Columns> {
        vec![stages::data::class_counts(&run.samples), stages::model::class_confidence(&run.samples, &run.outputs)]
    }

    fn section(&self, manifest: &mut RunManifest) {
        manifest.set(&self.0);
    }
}

/// A `misfit score` run's configuration (`run.json`'s `config`, and
/// `misfit.config` in every table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRunConfig {
    pub files: ScoreFiles,
    pub scores: ScoreConfig,
}

impl crate::run::Section for ScoreRunConfig {
    const KEY: &'static str = "config";
}

/// Scores the files into `outputs/<run>/` through the audit's stages and
/// run writer: `samples.parquet` and `classes.parquet` with every column
/// that applies to samples without images or a test split (all rows are
/// `train`), `embeddings.parquet` and `neighbors.parquet` when embeddings
/// are given, `run.json`. Returns where the run is, its manifest and the scores.
pub fn run(
    files: &ScoreFiles,
    cfg: &ScoreConfig,
    outputs: &Path,
    run_name: &str,
) -> Result<(PathBuf, RunManifest, quality::Scores)> {
    run_with(files, cfg, outputs, run_name, false, None).map(|(dest, manifest, sc, _)| (dest, manifest, sc))
}

/// A spinner on standard error naming the stage `misfit score` is in, shown
/// only on a terminal and only when `enabled` (`-q` turns it off).
fn stage_spinner(enabled: bool) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// [`run`], with a spinner naming each stage (reading, scoring, writing the
/// tables) on a terminal when `progress` is set, and the findings under
/// `rules` (and the folders they came from) computed before the run is
/// moved into place: a rule that fails leaves the previous run of that
/// name as it was.
pub fn run_with(
    files: &ScoreFiles,
    cfg: &ScoreConfig,
    outputs: &Path,
    run_name: &str,
    progress: bool,
    rules: Option<(&crate::findings::RuleSet, &[String])>,
) -> Result<(PathBuf, RunManifest, quality::Scores, Option<crate::findings::Findings>)> {
    let spinner = stage_spinner(progress);
    let result = run_stages(files, cfg, outputs, run_name, &spinner, rules);
    spinner.finish_and_clear();
    result
}

fn run_stages(
    files: &ScoreFiles,
    cfg: &ScoreConfig,
    outputs: &Path,
    run_name: &str,
    spinner: &indicatif::ProgressBar,
    rules: Option<(&crate::findings::RuleSet, &[String])>,
) -> Result<(PathBuf, RunManifest, quality::Scores, Option<crate::findings::Findings>)> {
    cfg.validate_options()?;
    let mut timing = BTreeMap::new();
    let t0 = Instant::now();
    // The run folder first, so that a bad --run name or a folder that is not
    // a run is refused before any reading or scoring (it is removed again on error).
    let config = ScoreRunConfig { files: files.clone(), scores: cfg.clone() };
    let config_json = serde_json::to_value(&config).expect("config serialises").to_string();
    let mut writer =
        RunWriter::create(outputs, run_name, TableMeta { config_json, dataset_fingerprint: String::new() })?;
    spinner.set_message(format!("reading {}", files.probs.display()));
    let data = load(files)?;
    timing.insert("read".to_string(), t0.elapsed().as_secs_f64());
    let k = data.classes;
    let classes: Vec<String> = match &files.classes {
        Some(c) if c.len() == k => c.clone(),
        Some(c) => {
            return Err(Error::Usage(format!("--classes names {} classes, the probabilities have {k}", c.len())))
        }
        None => (0..k).map(|i| i.to_string()).collect(),
    };
    let n = data.labels.len();
    let samples = Samples {
        classes: &classes,
        train_ids: &data.ids,
        train_labels: &data.labels,
        test_ids: &[],
        test_labels: &[],
    };
    let outputs = evaluate::outputs_from_probs(&data.probs, k, &data.labels);
    let inputs =
        ScoreInputs { samples: n, classes: classes.clone(), embedding_dim: data.embeddings.as_ref().map(|(_, d)| *d) };
    let given = score_stage::Given {
        source: files.probs.display().to_string(),
        embeddings: data.embeddings.as_ref().map(|(e, d)| (quality::neighbors::normalize(e, *d), *d)),
    };
    let made: Vec<Box<dyn stages::Made>> = vec![Box::new(Read(inputs)), Box::new(given)];
    let mut run = RunState::new(samples, None, outputs, cfg.seed, false, None, made);
    spinner.set_message(format!("scoring {n} images"));
    for (name, seconds) in run.run_all(&[&score_stage::Score { config: cfg } as &dyn Stage], &writer)? {
        timing.insert(name.to_string(), seconds);
    }
    spinner.set_message("writing the tables");
    let t2 = Instant::now();
    let mut manifest = RunManifest::new(run_name, &config);
    run.write(&mut writer, &mut manifest)?;
    manifest.notes = run.notes();
    timing.insert("tables".to_string(), t2.elapsed().as_secs_f64());
    manifest.timing_s = timing;
    let (dest, found) = writer.commit_with(&mut manifest, |dir| {
        rules.map(|(rules, dirs)| crate::findings::before_commit(dir, rules, dirs)).transpose()
    })?;
    // The manifest returned is what run.json holds, findings included.
    manifest.set_some(found.as_ref().map(|f| &f.summary));
    let scored = run.take::<score_stage::Scored>().expect("the scores stage made its scores");
    Ok((dest, manifest, scored.scores, found))
}
