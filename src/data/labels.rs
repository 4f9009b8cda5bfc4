//! A labels file replaces the labels of a loaded dataset, so that another label
//! set (a new vendor's, a relabelling) can be audited against the same images.
//! CSV (with a header) or Parquet, columns `id` and `label`; a label is a
//! class name or a class index. Every image must get exactly one label.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::path::Path;

use super::{Dataset, Split};
use crate::error::{Error, Problem, Result};

/// How many culprits an error lists by name before it counts the rest.
const NAMED: usize = 5;

fn name_some(items: &[String]) -> String {
    let mut s = items.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > NAMED {
        s.push_str(&format!(" and {} more", items.len() - NAMED));
    }
    s
}

/// Turns a label cell (class name or index) into a class index.
fn parse_label(cell: &str, classes: &[String]) -> Option<u32> {
    if let Some(i) = classes.iter().position(|c| c == cell) {
        return Some(i as u32);
    }
    cell.trim().parse::<u32>().ok().filter(|&i| (i as usize) < classes.len())
}

/// Reads (entry, id, label text) rows from a CSV file with `id` and `label` columns.
fn read_csv(path: &Path) -> Result<Vec<(String, String, String)>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| Problem::file(path, format!("cannot read CSV: {e}")))?;
    let headers =
        reader.headers().map_err(|e| Problem::file(path, format!("cannot read the CSV header: {e}")))?.clone();
    let col = |name: &str| {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
            Problem::file(
                path,
                format!("no '{name}' column in the header (columns: {})", headers.iter().collect::<Vec<_>>().join(",")),
            )
        })
    };
    let (id_col, label_col) = (col("id")?, col("label")?);
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| Problem::entry(path, format!("line {line}"), format!("malformed CSV: {e}")))?;
        let (Some(id), Some(label)) = (rec.get(id_col), rec.get(label_col)) else {
            return Err(Problem::entry(path, format!("line {line}"), "missing id or label field").into());
        };
        rows.push((format!("line {line}"), id.to_string(), label.to_string()));
    }
    Ok(rows)
}

/// Reads (entry, id, label text) rows from a Parquet file with `id` and `label` columns.
fn read_parquet(path: &Path) -> Result<Vec<(String, String, String)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: &dyn std::fmt::Display| -> Error {
        Problem::file(path, format!("not a readable Parquet file: {e}")).into()
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?.build().map_err(|e| bad(&e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        let column = |name: &str| -> Result<arrow::array::ArrayRef> {
            let c = batch.column_by_name(name).ok_or_else(|| Problem::file(path, format!("no '{name}' column")))?;
            arrow::compute::cast(c, &DataType::LargeUtf8)
                .map_err(|e| Problem::file(path, format!("column '{name}' cannot be read as text: {e}")).into())
        };
        let (ids, labels) = (column("id")?, column("label")?);
        let (ids, labels) = (ids.as_string::<i64>(), labels.as_string::<i64>());
        for i in 0..batch.num_rows() {
            let entry = format!("row {}", rows.len());
            if ids.is_null(i) || labels.is_null(i) {
                return Err(Problem::entry(path, entry, "id or label is null").into());
            }
            rows.push((entry, ids.value(i).to_string(), labels.value(i).to_string()));
        }
    }
    Ok(rows)
}

/// Replaces the labels of both splits with those of `path`.
pub fn apply(ds: &mut Dataset, path: &Path) -> Result<()> {
    let is_parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let rows = if is_parquet { read_parquet(path)? } else { read_csv(path)? };
    let mut labels: HashMap<String, (u32, String)> = HashMap::with_capacity(rows.len());
    for (entry, id, text) in rows {
        let label = parse_label(&text, &ds.classes).ok_or_else(|| {
            Problem::entry(
                path,
                &entry,
                format!("label '{text}' is neither a class name nor a class index 0..{}", ds.classes.len() - 1),
            )
        })?;
        if let Some((_, first)) = labels.insert(id.clone(), (label, entry.clone())) {
            return Err(Problem::entry(path, entry, format!("id '{id}' already has a label at {first}")).into());
        }
    }
    let mut missing = Vec::new();
    for split in Split::ALL {
        let set = ds.split_mut(split);
        for (id, label) in set.ids.iter().zip(set.labels.iter_mut()) {
            match labels.remove(id) {
                Some((l, _)) => *label = l,
                None => missing.push(id.clone()),
            }
        }
    }
    if !labels.is_empty() {
        let mut unknown: Vec<(String, String)> = labels.into_iter().map(|(id, (_, entry))| (entry, id)).collect();
        unknown.sort_by_key(|(entry, _)| entry.split(' ').nth(1).and_then(|n| n.parse::<usize>().ok()));
        let named: Vec<String> = unknown.iter().map(|(e, id)| format!("'{id}' ({e})")).collect();
        return Err(Problem::file(
            path,
            format!("{} id(s) match no image of the dataset: {}", named.len(), name_some(&named)),
        )
        .into());
    }
    if !missing.is_empty() {
        return Err(
            Problem::file(path, format!("{} image(s) get no label: {}", missing.len(), name_some(&missing))).into()
        );
    }
    Ok(())
}
