//! `misfit score`: bring your own model. Scores labels from files instead of
//! a model trained here: out-of-sample probabilities and labels (and, when
//! given, embeddings and ids) from Parquet or NumPy `.npy`, so that a team
//! with a model in any framework gets the same label-quality audit.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
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
pub(crate) fn read_npy(path: &Path) -> Result<(Vec<f64>, Vec<usize>)> {
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
        if v.null_count() > 0 {
            return Err(Problem::entry(path, format!("row {i}"), format!("'{name}' holds a null value")).into());
        }
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

/// A `label` column as class indices: integers, or floats that are whole
/// numbers; a null, a fraction or a column of text is an error naming the
/// row (`first_row`: the row number of the column's first value).
fn label_column(path: &Path, col: &dyn Array, first_row: usize) -> Result<Vec<i64>> {
    let dt = col.data_type();
    if !(dt.is_integer() || dt.is_floating()) {
        return Err(Problem::file(
            path,
            format!("column 'label' holds {dt}, not class indices; give integers 0, 1, ... (names go in --classes)"),
        )
        .into());
    }
    if let Some(i) = (0..col.len()).find(|&i| col.is_null(i)) {
        return Err(Problem::entry(path, format!("row {}", first_row + i), "label is null").into());
    }
    let c = arrow::compute::cast(col, &DataType::Float64)
        .map_err(|e| Problem::file(path, format!("column 'label' is not numeric: {e}")))?;
    c.as_primitive::<Float64Type>()
        .values()
        .iter()
        .enumerate()
        .map(|(i, &v)| match v.fract() == 0.0 && v.abs() < 1e15 {
            true => Ok(v as i64),
            false => {
                Err(Problem::entry(path, format!("row {}", first_row + i), format!("label {v} is not an integer"))
                    .into())
            }
        })
        .collect()
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
                if let Some(i) = (0..c.len()).find(|&i| c.is_null(i)) {
                    return Err(Problem::entry(path, format!("row {}", ids.len() + i), "id is null").into());
                }
                let c = arrow::compute::cast(c, &DataType::LargeUtf8).map_err(|e| bad(&e))?;
                ids.extend(c.as_string::<i64>().iter().map(|s| s.unwrap_or_default().to_string()));
            }
            if let Some(c) = batch.column_by_name("label") {
                let first = labels.len();
                labels.extend(label_column(path, c.as_ref(), first)?);
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
    if n == 0 {
        return Err(Problem::file(&files.probs, "no rows: there is nothing to score").into());
    }
    if out.classes < 2 {
        return Err(Problem::file(
            &files.probs,
            format!("{} probability per row: label quality needs at least 2 classes", out.classes),
        )
        .into());
    }
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
                let first = v.len();
                v.extend(label_column(p, c.as_ref(), first)?);
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
        return Err(Problem::file(
            &labels_file,
            format!("{} labels for {n} rows of probabilities in {}", labels.len(), files.probs.display()),
        )
        .into());
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
    if let Some((e, dim)) = &out.embeddings {
        let src = files.embeddings.as_ref().unwrap_or(&files.probs);
        scores::check_embeddings(&src.display().to_string(), "", e, *dim)?;
    }
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
    cfg.validate_options()?;
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
    let notes = match data.embeddings {
        Some(_) => scores::small_class_notes(&data.labels, &classes, cfg.k),
        None => Vec::new(),
    };
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
    // Each table built and written on its own thread.
    let (samples_table, (classes_table, extra)) = rayon::join(
        || {
            let parts = vec![
                stages::data::sample_keys(&samples),
                stages::model::sample_columns(&classes, &model_outputs, &vec![None; n], None),
                score_stage::sample_columns(&classes, &sc.images),
                score_stage::label_error_columns(&sc.images),
            ];
            table::assemble(&schema::SAMPLES, parts)
        },
        || {
            rayon::join(
                || {
                    let parts = vec![
                        stages::data::class_counts(&samples),
                        stages::model::class_confidence(&samples, &model_outputs),
                        score_stage::class_columns(&sc, &data.labels, k),
                        score_stage::noise_interval_columns(&data.labels, &data.probs, k, cfg.seed),
                    ];
                    table::assemble(&schema::CLASSES, parts)
                },
                || match (&emb, &sc.neighbors) {
                    (Some((e, d)), Some((tr, te))) => rayon::join(
                        || Some(score_stage::embeddings(&samples, e, &[], *d)),
                        || Some(score_stage::neighbors(&samples, tr, te)),
                    ),
                    _ => (None, None),
                },
            )
        },
    );
    let mut tables = vec![(&schema::SAMPLES, samples_table), (&schema::CLASSES, classes_table)];
    if let (Some(e), Some(nb)) = extra {
        tables.push((&schema::EMBEDDINGS, e));
        tables.push((&schema::NEIGHBORS, nb));
    }
    writer.write_all(tables)?;
    timing.insert("tables".to_string(), t2.elapsed().as_secs_f64());
    let mut manifest = RunManifest::new(run_name, RunConfig::Score(config));
    manifest.notes = notes;
    manifest.inputs = Some(ScoreInputs { samples: n, classes, embedding_dim: emb.as_ref().map(|(_, d)| *d) });
    manifest.scores = Some(score_stage::ScoresSummary::new(&sc, cfg, n, Vec::new()));
    manifest.timing_s = timing;
    let dest = writer.commit(&mut manifest)?;
    Ok((dest, manifest, sc))
}
