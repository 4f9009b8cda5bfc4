//! Parquet in the layout Hugging Face `datasets` exports for images: an
//! `image` (or `img`) struct column with `bytes` and `path`, an integer
//! `label` column, and the class names in the file's `huggingface` metadata
//! (or given with `--classes`). A file's split comes from its name
//! (`train-00000-of-00001.parquet`, `test-....parquet`); a folder is searched
//! for such files.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::decode::{self, Encoded};
use super::{name_from_path, Dataset, LoadOptions, Problems, Split};
use crate::error::{Error, Problem, Result};

/// Names accepted for the image column, in order of preference.
pub const IMAGE_COLUMNS: [&str; 2] = ["image", "img"];
/// Name of the label column.
pub const LABEL_COLUMN: &str = "label";

/// The split a Parquet file holds, from its name.
pub fn split_of(path: &Path) -> Option<Split> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    if name.starts_with("train") {
        Some(Split::Train)
    } else if name.starts_with("test") {
        Some(Split::Test)
    } else {
        None
    }
}

/// Every `.parquet` file under a folder (three levels deep at most), sorted.
pub fn find_files(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
        for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let p = e.map_err(|e| Error::io(dir, e))?.path();
            if p.is_dir() && depth < 3 {
                walk(&p, depth + 1, out)?;
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("parquet")) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, 0, &mut out)?;
    out.sort();
    Ok(out)
}

/// Class names from a file's Hugging Face metadata (`info.features.label.names`).
fn hf_class_names(json: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let names = v.pointer(&format!("/info/features/{LABEL_COLUMN}/names"))?.as_array()?;
    names.iter().map(|n| n.as_str().map(String::from)).collect()
}

fn malformed(path: &Path, e: impl std::fmt::Display) -> Error {
    Problem::file(path, format!("not a readable Parquet file: {e}")).into()
}

/// One file's rows, before ids are chosen.
struct Rows {
    paths: Vec<Option<String>>,
    encoded: Vec<Encoded>,
}

/// Loads a Hugging Face-style image Parquet file, or a folder of them.
pub fn load(path: &Path, opts: &LoadOptions, problems: &mut Problems) -> Result<Dataset> {
    let files = if path.is_dir() { find_files(path)? } else { vec![path.to_path_buf()] };
    if files.is_empty() {
        return Err(Problem::file(path, "no .parquet files found").into());
    }
    let mut classes: Option<(Vec<String>, PathBuf)> = None;
    let mut encoded = Vec::new();
    let mut used_ids = HashSet::new();
    for file in &files {
        let split = split_of(file).ok_or_else(|| {
            Problem::file(file, "cannot tell which split this file holds: name it train*.parquet or test*.parquet, as Hugging Face does")
        })?;
        let (names, rows) = read_file(file, split, problems)?;
        match (&classes, names) {
            (None, Some(n)) => classes = Some((n, file.clone())),
            (Some((c, first)), Some(n)) if *c != n => {
                return Err(Problem::file(
                    file,
                    format!("its class names differ from those of {}: {n:?} against {c:?}", first.display()),
                )
                .into())
            }
            _ => {}
        }
        // Ids: the image paths where every row has one and they are unique, else file:row.
        let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let by_path = rows.paths.iter().all(|p| p.as_deref().is_some_and(|p| !p.is_empty()))
            && rows.paths.iter().flatten().all(|p| !used_ids.contains(p))
            && rows.paths.iter().flatten().collect::<HashSet<_>>().len() == rows.paths.len();
        for (mut e, p) in rows.encoded.into_iter().zip(rows.paths) {
            e.id = if by_path {
                p.expect("checked above")
            } else {
                format!("{file_name}:{}", e.entry.trim_start_matches("row "))
            };
            used_ids.insert(e.id.clone());
            encoded.push(e);
        }
    }
    let classes = match (&opts.classes, classes) {
        (Some(c), _) => c.clone(),
        (None, Some((c, _))) => c,
        (None, None) => {
            return Err(Problem::file(
                &files[0],
                "no class names: the file has no Hugging Face metadata naming them; pass --classes name0,name1,...",
            )
            .into())
        }
    };
    for e in &encoded {
        if e.label as usize >= classes.len() {
            problems.report(Problem::entry(
                &e.file,
                &e.entry,
                format!("label {} is outside the class range 0..{}", e.label, classes.len() - 1),
            ))?;
        }
    }
    encoded.retain(|e| (e.label as usize) < classes.len());
    let (height, width, train, test) = decode::decode_all(encoded, opts.resize, problems)?;
    if test.is_empty() {
        problems.note("no test*.parquet file: the test split is empty");
    }
    Ok(Dataset {
        name: name_from_path(path),
        source: format!("{} (Hugging Face image Parquet)", path.display()),
        classes,
        height,
        width,
        train,
        test,
    })
}

/// Reads one file: its class names (if its metadata has them) and its rows.
fn read_file(file: &Path, split: Split, problems: &mut Problems) -> Result<(Option<Vec<String>>, Rows)> {
    let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| malformed(file, e))?;
    let names = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "huggingface"))
        .and_then(|k| k.value.as_deref())
        .or_else(|| builder.schema().metadata().get("huggingface").map(String::as_str))
        .and_then(hf_class_names);
    let schema = builder.schema().clone();
    let image_col = IMAGE_COLUMNS.iter().find(|c| schema.column_with_name(c).is_some()).ok_or_else(|| {
        Problem::file(file, format!("no image column: expected a struct column named {}", IMAGE_COLUMNS.join(" or ")))
    })?;
    if schema.column_with_name(LABEL_COLUMN).is_none() {
        return Err(Problem::file(file, format!("no '{LABEL_COLUMN}' column")).into());
    }
    let reader = builder.with_batch_size(4096).build().map_err(|e| malformed(file, e))?;
    let mut rows = Rows { paths: Vec::new(), encoded: Vec::new() };
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| malformed(file, e))?;
        read_batch(file, split, &batch, image_col, &mut row, &mut rows, problems)?;
    }
    Ok((names, rows))
}

fn read_batch(
    file: &Path,
    split: Split,
    batch: &RecordBatch,
    image_col: &str,
    row: &mut usize,
    rows: &mut Rows,
    problems: &mut Problems,
) -> Result<()> {
    let image = batch.column_by_name(image_col).expect("checked in the schema");
    let Some(image) = image.as_struct_opt() else {
        return Err(Problem::file(
            file,
            format!("column '{image_col}' is {}, not a struct with bytes and path", image.data_type()),
        )
        .into());
    };
    let bytes_col = image
        .column_by_name("bytes")
        .ok_or_else(|| Problem::file(file, format!("column '{image_col}' has no 'bytes' field")))?;
    let bytes_col = arrow::compute::cast(bytes_col, &DataType::LargeBinary)
        .map_err(|e| Problem::file(file, format!("'{image_col}.bytes' is not binary: {e}")))?;
    let bytes_col = bytes_col.as_binary::<i64>();
    let path_col: Option<ArrayRef> = match image.column_by_name("path") {
        Some(p) => Some(
            arrow::compute::cast(p, &DataType::LargeUtf8)
                .map_err(|e| Problem::file(file, format!("'{image_col}.path' is not text: {e}")))?,
        ),
        None => None,
    };
    let path_col = path_col.as_ref().map(|p| p.as_string::<i64>());
    let label = batch.column_by_name(LABEL_COLUMN).expect("checked in the schema");
    if !label.data_type().is_integer() {
        return Err(
            Problem::file(file, format!("column '{LABEL_COLUMN}' is {}, not an integer", label.data_type())).into()
        );
    }
    let label = arrow::compute::cast(label, &DataType::Int64).map_err(|e| malformed(file, e))?;
    let label = label.as_primitive::<Int64Type>();
    for i in 0..batch.num_rows() {
        let r = *row;
        *row += 1;
        let entry = format!("row {r}");
        if label.is_null(i) {
            problems.report(Problem::entry(file, entry, "label is null"))?;
            continue;
        }
        let l = label.value(i);
        if !(0..u32::MAX as i64).contains(&l) {
            problems.report(Problem::entry(file, entry, format!("label {l} is negative or too large")))?;
            continue;
        }
        if image.is_null(i) || bytes_col.is_null(i) {
            problems.report(Problem::entry(
                file,
                entry,
                "image has no bytes (images stored only as paths are not supported)",
            ))?;
            continue;
        }
        let path = path_col.and_then(|p| (!p.is_null(i)).then(|| p.value(i).to_string()));
        rows.paths.push(path);
        rows.encoded.push(Encoded {
            id: String::new(),
            split,
            label: l as u32,
            file: file.display().to_string(),
            entry: format!("row {r}"),
            bytes: bytes_col.value(i).to_vec(),
        });
    }
    Ok(())
}
