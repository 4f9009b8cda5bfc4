//! `misfit score`: bring your own model. Scores labels from files instead of
//! a model trained here: out-of-sample probabilities and labels (and, when
//! given, embeddings and ids) from Parquet or NumPy `.npy`, so that a team
//! with a model in any framework gets the same label-quality audit.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Problem, Result};
use crate::run::{schema, RunConfig, RunManifest, RunWriter, ScoreInputs};
use crate::scores::{self, Embeddings, ScoreConfig, ScoreInput};
use crate::stages::{self, evaluate, scores as score_stage, Samples};
use crate::table::{self, TableMeta};

/// What `misfit score` reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreFiles {
    /// Probabilities: `.npy` `[n, classes]`, or Parquet with a `probs` list column
    /// (and optionally `label`, `id`, `embedding` columns).
    pub probs: PathBuf,
    /// Labels, when not in the probabilities' Parquet: `.npy` `[n]` integers or Parquet `label`.
    pub labels: Option<PathBuf>,
    /// Embeddings: `.npy` `[n, dim]` or Parquet `embedding` list column.
    pub embeddings: Option<PathBuf>,
    /// Class names (default `0`, `1`, ...).
    pub classes: Option<Vec<String>>,
}

/// The data read from the files.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub ids: Vec<String>,
    pub labels: Vec<u32>,
    pub probs: Vec<f32>,
    pub classes: usize,
    pub embeddings: Option<(Vec<f32>, usize)>,
}

fn is_npy(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// Reads a 1-D or 2-D `.npy` array of numbers as f64, with its shape.
fn read_npy(path: &Path) -> Result<(Vec<f64>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad =
        |e: &dyn std::fmt::Display| -> Error { Problem::file(path, format!("not a readable .npy array: {e}")).into() };
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(&e))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() != npyz::Order::C {
        return Err(Problem::file(path, "Fortran-ordered arrays are not supported; save with C order").into());
    }
    let dtype = npy.dtype();
    let descr = dtype.descr();
    let v: Vec<f64> = match descr.trim_matches('\'') {
        "<f4" => npy.into_vec::<f32>().map_err(|e| bad(&e))?.into_iter().map(f64::from).collect(),
        "<f8" => npy.into_vec::<f64>().map_err(|e| bad(&e))?,
        "<i8" => npy.into_vec::<i64>().map_err(|e| bad(&e))?.into_iter().map(|x| x as f64).collect(),
        "<i4" => npy.into_vec::<i32>().map_err(|e| bad(&e))?.into_iter().map(f64::from).collect(),
        "<u1" | "|u1" => npy.into_vec::<u8>().map_err(|e| bad(&e))?.into_iter().map(f64::from).collect(),
        other => {
            return Err(
                Problem::file(path, format!("dtype {other} is not supported (float32/64, int32/64, uint8)")).into()
            )
        }
    };
    Ok((v, shape))
}

/// A list (or fixed-size list) column of floats as rows.
fn float_rows(path: &Path, col: &dyn Array, name: &str) -> Result<(Vec<f32>, usize)> {
    let list_type =
        DataType::LargeList(std::sync::Arc::new(arrow::datatypes::Field::new("item", DataType::Float64, true)));
    let cast = arrow::compute::cast(col, &list_type)
        .map_err(|e| Problem::file(path, format!("column '{name}' is not a list of numbers: {e}")))?;
    let list = cast.as_list::<i64>();
    let mut width = None;
    let mut out = Vec::new();
    for i in 0..list.len() {
        if list.is_null(i) {
            return Err(Problem::entry(path, format!("row {i}"), format!("'{name}' is null")).into());
        }
        let v = list.value(i);
        let v = v.as_primitive::<Float64Type>();
        match width {
            None => width = Some(v.len()),
            Some(w) if w != v.len() => {
                return Err(Problem::entry(
                    path,
                    format!("row {i}"),
                    format!("'{name}' has {} values, row 0 has {w}", v.len()),
                )
                .into())
            }
            _ => {}
        }
        out.extend(v.values().iter().map(|&x| x as f32));
    }
    Ok((out, width.unwrap_or(0)))
}

/// Reads the score inputs.
pub fn load(files: &ScoreFiles) -> Result<Loaded> {
    let mut out = Loaded::default();
    let mut table_labels = None;
    let mut table_embeddings = None;
    if is_npy(&files.probs) {
        let (v, shape) = read_npy(&files.probs)?;
        if shape.len() != 2 {
            return Err(Problem::file(
                &files.probs,
                format!("probabilities must be 2-D [n, classes], got shape {shape:?}"),
            )
            .into());
        }
        out.classes = shape[1];
        out.probs = v.into_iter().map(|x| x as f32).collect();
    } else {
        let path = &files.probs;
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let bad = |e: &dyn std::fmt::Display| -> Error {
            Problem::file(path, format!("not a readable Parquet file: {e}")).into()
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| bad(&e))?.build().map_err(|e| bad(&e))?;
        let (mut ids, mut labels, mut emb, mut dim) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            let probs = batch.column_by_name("probs").ok_or_else(|| Problem::file(path, "no 'probs' column"))?;
            let (p, k) = float_rows(path, probs.as_ref(), "probs")?;
            out.classes = k;
            out.probs.extend(p);
            if let Some(c) = batch.column_by_name("id") {
                let c = arrow::compute::cast(c, &DataType::LargeUtf8).map_err(|e| bad(&e))?;
                ids.extend(c.as_string::<i64>().iter().map(|s| s.unwrap_or_default().to_string()));
            }
            if let Some(c) = batch.column_by_name("label") {
                let c = arrow::compute::cast(c, &DataType::Int64).map_err(|e| bad(&e))?;
                labels.extend(c.as_primitive::<Int64Type>().iter().map(|v| v.unwrap_or(-1)));
            }
            if let Some(c) = batch.column_by_name("embedding") {
                let (e, d) = float_rows(path, c.as_ref(), "embedding")?;
                emb.extend(e);
                dim = d;
            }
        }
        out.ids = ids;
        if !labels.is_empty() {
            table_labels = Some(labels);
        }
        if !emb.is_empty() {
            table_embeddings = Some((emb, dim));
        }
    }
    let n = out.probs.len() / out.classes.max(1);
    let labels: Vec<i64> = match (&files.labels, table_labels) {
        (Some(p), _) if is_npy(p) => {
            let (v, shape) = read_npy(p)?;
            if shape.len() != 1 {
                return Err(Problem::file(p, format!("labels must be 1-D [n], got shape {shape:?}")).into());
            }
            if let Some(i) = v.iter().position(|x| x.fract() != 0.0) {
                return Err(Problem::entry(p, format!("row {i}"), format!("label {} is not an integer", v[i])).into());
            }
            v.into_iter().map(|x| x as i64).collect()
        }
        (Some(p), _) => {
            let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
            let bad = |e: &dyn std::fmt::Display| -> Error {
                Problem::file(p, format!("not a readable Parquet file: {e}")).into()
            };
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| bad(&e))?.build().map_err(|e| bad(&e))?;
            let mut v = Vec::new();
            for batch in reader {
                let batch = batch.map_err(|e| bad(&e))?;
                let c = batch.column_by_name("label").ok_or_else(|| Problem::file(p, "no 'label' column"))?;
                let c = arrow::compute::cast(c, &DataType::Int64).map_err(|e| bad(&e))?;
                v.extend(c.as_primitive::<Int64Type>().iter().map(|x| x.unwrap_or(-1)));
            }
            v
        }
        (None, Some(l)) => l,
        (None, None) => {
            return Err(Error::Usage("no labels: give --labels FILE or a 'label' column with the probabilities".into()))
        }
    };
    let labels_file = files.labels.clone().unwrap_or_else(|| files.probs.clone());
    if labels.len() != n {
        return Err(
            Problem::file(&labels_file, format!("{} labels for {n} rows of probabilities", labels.len())).into()
        );
    }
    for (i, &l) in labels.iter().enumerate() {
        if l < 0 || l as usize >= out.classes {
            return Err(Problem::entry(
                &labels_file,
                format!("row {i}"),
                format!("label {l} is outside 0..{}", out.classes - 1),
            )
            .into());
        }
    }
    out.labels = labels.into_iter().map(|l| l as u32).collect();
    if out.ids.is_empty() {
        out.ids = (0..n).map(|i| i.to_string()).collect();
    }
    if out.ids.len() != n {
        return Err(Problem::file(&files.probs, format!("{} ids for {n} rows", out.ids.len())).into());
    }
    let mut seen = HashSet::with_capacity(n);
    for (i, id) in out.ids.iter().enumerate() {
        if !seen.insert(id.as_str()) {
            return Err(
                Problem::entry(&files.probs, format!("row {i}"), format!("id '{id}' repeats an earlier row")).into()
            );
        }
    }
    out.embeddings = match (&files.embeddings, table_embeddings) {
        (Some(p), _) if is_npy(p) => {
            let (v, shape) = read_npy(p)?;
            if shape.len() != 2 || shape[0] != n {
                return Err(Problem::file(p, format!("embeddings must be [{n}, dim], got shape {shape:?}")).into());
            }
            Some((v.into_iter().map(|x| x as f32).collect(), shape[1]))
        }
        (Some(p), _) => {
            return Err(Problem::file(
                p,
                "embeddings must be a .npy file, or an 'embedding' column with the probabilities",
            )
            .into())
        }
        (None, e) => e,
    };
    Ok(out)
}

/// A `misfit score` run's configuration (`run.json`'s `config`, and
/// `misfit.config` in every table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRunConfig {
    pub files: ScoreFiles,
    pub scores: ScoreConfig,
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
) -> Result<(PathBuf, RunManifest, scores::Scores)> {
    let mut timing = BTreeMap::new();
    let t0 = Instant::now();
    // The run folder first, so that a bad --run name or a folder that is not
    // a run is refused before any reading or scoring (it is removed again on error).
    let config = ScoreRunConfig { files: files.clone(), scores: cfg.clone() };
    let config_json = serde_json::to_value(&config).expect("config serialises").to_string();
    let mut writer =
        RunWriter::create(outputs, run_name, TableMeta { config_json, dataset_fingerprint: String::new() })?;
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
    let mut counts = vec![0usize; k];
    for &l in &data.labels {
        counts[l as usize] += 1;
    }
    if data.embeddings.is_some() {
        if let Some((c, &m)) = counts.iter().enumerate().min_by_key(|(_, &m)| m).filter(|(_, &m)| m <= cfg.k) {
            return Err(Error::Usage(format!(
                "k = {} neighbours but class {} has only {m} samples",
                cfg.k, classes[c]
            )));
        }
    }
    let t1 = Instant::now();
    let emb = data.embeddings.as_ref().map(|(e, d)| (scores::neighbors::normalize(e, *d), *d));
    let source = files.probs.display().to_string();
    let input = ScoreInput {
        source: &source,
        classes: k,
        train_labels: &data.labels,
        probs: &data.probs,
        test_labels: &[],
        test_probs: &[],
        embeddings: emb.as_ref().map(|(e, d)| Embeddings { dim: *d, train: e, test: &[] }),
        pixels: None,
        aum: None,
    };
    let sc = scores::score(&input, cfg)?;
    timing.insert("score".to_string(), t1.elapsed().as_secs_f64());

    let t2 = Instant::now();
    let samples = Samples {
        classes: &classes,
        train_ids: &data.ids,
        train_labels: &data.labels,
        test_ids: &[],
        test_labels: &[],
    };
    let n = data.labels.len();
    let model_outputs = evaluate::outputs_from_probs(&data.probs, k, &data.labels);
    let parts = vec![
        stages::data::sample_keys(&samples),
        stages::model::sample_columns(&classes, &model_outputs, &vec![None; n], None),
        score_stage::sample_columns(&classes, &sc.images),
        score_stage::label_error_columns(&sc.images),
    ];
    writer.write(&schema::SAMPLES, &table::assemble(&schema::SAMPLES, parts))?;
    let parts = vec![
        stages::data::class_counts(&samples),
        stages::model::class_confidence(&samples, &model_outputs),
        score_stage::class_columns(&sc, &data.labels, k),
        score_stage::noise_interval_columns(&data.labels, &data.probs, k, cfg.seed),
    ];
    writer.write(&schema::CLASSES, &table::assemble(&schema::CLASSES, parts))?;
    if let (Some((e, d)), Some((tr, te))) = (&emb, &sc.neighbors) {
        writer.write(&schema::EMBEDDINGS, &score_stage::embeddings(&samples, e, &[], *d))?;
        writer.write(&schema::NEIGHBORS, &score_stage::neighbors(&samples, tr, te))?;
    }
    timing.insert("tables".to_string(), t2.elapsed().as_secs_f64());
    let mut manifest = RunManifest::new(run_name, RunConfig::Score(config));
    manifest.inputs = Some(ScoreInputs { samples: n, classes, embedding_dim: emb.as_ref().map(|(_, d)| *d) });
    manifest.scores = Some(score_stage::ScoresSummary::new(&sc, cfg, n, Vec::new()));
    manifest.timing_s = timing;
    let dest = writer.commit(&mut manifest)?;
    Ok((dest, manifest, sc))
}
