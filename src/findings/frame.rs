//! Polars frames in and out: typed columns taken from a collected frame,
//! a frame's columns as Arrow arrays for the run writer, and a frame
//! printed as a table, CSV, JSON lines or Parquet (`misfit query`,
//! `misfit findings`).

use arrow::array::{ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType as ArrowType, Field};
use polars::prelude::{AnyValue, Column, DataFrame, DataType, ParquetWriter};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::run::table::FIELD_DESCRIPTION;

/// What a frame's column could not be turned into.
fn column_error(name: &str, what: impl std::fmt::Display) -> Error {
    Error::Usage(format!("column '{name}': {what}"))
}

fn series<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column> {
    df.column(name).map_err(|e| column_error(name, e))
}

/// Column `name` as floats (integers and booleans widened; nulls as None).
pub fn f64s(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let c = series(df, name)?.cast(&DataType::Float64).map_err(|e| column_error(name, e))?;
    Ok(c.f64().map_err(|e| column_error(name, e))?.iter().collect())
}

/// Column `name` as 64-bit integers (nulls as None).
pub fn i64s(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>> {
    let c = series(df, name)?.cast(&DataType::Int64).map_err(|e| column_error(name, e))?;
    Ok(c.i64().map_err(|e| column_error(name, e))?.iter().collect())
}

/// Column `name` as text (nulls as None).
pub fn strs(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>> {
    let c = series(df, name)?.cast(&DataType::String).map_err(|e| column_error(name, e))?;
    Ok(c.str().map_err(|e| column_error(name, e))?.iter().map(|s| s.map(str::to_string)).collect())
}

/// Column `name` as booleans (nulls as false).
pub fn bools(df: &DataFrame, name: &str) -> Result<Vec<bool>> {
    let c = series(df, name)?.cast(&DataType::Boolean).map_err(|e| column_error(name, e))?;
    Ok(c.bool().map_err(|e| column_error(name, e))?.iter().map(|b| b.unwrap_or(false)).collect())
}

/// An `Array(Float32, k)` column (`probs`) as row-major values, `[rows, k]`.
pub fn f32_rows(df: &DataFrame, name: &str) -> Result<(Vec<f32>, usize)> {
    let c = series(df, name)?;
    let a = c.array().map_err(|e| column_error(name, e))?;
    let width = a.width();
    let inner = a.get_inner().cast(&DataType::Float32).map_err(|e| column_error(name, e))?;
    let v: Vec<f32> = inner.f32().map_err(|e| column_error(name, e))?.iter().map(|x| x.unwrap_or(0.0)).collect();
    Ok((v, width))
}

/// Column `name` as floats, all None when the frame lacks it (a run
/// without that stage, or a rule that did not return it).
pub fn f64s_or_none(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    if has(df, name) {
        f64s(df, name)
    } else {
        Ok(vec![None; df.height()])
    }
}

/// Column `name` as integers, all None when the frame lacks it.
pub fn i64s_or_none(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>> {
    if has(df, name) {
        i64s(df, name)
    } else {
        Ok(vec![None; df.height()])
    }
}

/// Column `name` as text, all None when the frame lacks it.
pub fn strs_or_none(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>> {
    if has(df, name) {
        strs(df, name)
    } else {
        Ok(vec![None; df.height()])
    }
}

/// Whether the frame has column `name`.
pub fn has(df: &DataFrame, name: &str) -> bool {
    df.column(name).is_ok()
}

/// One column of a frame as an Arrow field and array with `description`:
/// booleans, integers (as 64-bit), floats (32 or 64-bit), text and nulls;
/// other types (lists, arrays) are refused, naming the column.
pub fn to_arrow(column: &Column, description: &str) -> std::result::Result<(Field, ArrayRef), String> {
    let name = column.name().to_string();
    let s = column.as_materialized_series();
    let cast = |t: &DataType| s.cast(t).map_err(|e| e.to_string());
    let array: ArrayRef = match s.dtype() {
        DataType::Boolean => Arc::new(BooleanArray::from_iter(cast(&DataType::Boolean)?.bool().unwrap().iter())),
        DataType::Float32 => Arc::new(Float32Array::from_iter(cast(&DataType::Float32)?.f32().unwrap().iter())),
        DataType::Float64 => Arc::new(Float64Array::from_iter(cast(&DataType::Float64)?.f64().unwrap().iter())),
        DataType::String | DataType::Null => {
            Arc::new(StringArray::from_iter(cast(&DataType::String)?.str().unwrap().iter()))
        }
        t if t.is_integer() => Arc::new(Int64Array::from_iter(cast(&DataType::Int64)?.i64().unwrap().iter())),
        t => return Err(format!("column '{name}' is of type {t}; a finding's evidence is a number, a flag or text")),
    };
    let field = Field::new(name, array.data_type().clone(), true)
        .with_metadata(HashMap::from([(FIELD_DESCRIPTION.to_string(), description.to_string())]));
    Ok((field, array))
}

/// The Arrow type [`to_arrow`] gives a Polars type, when it takes it.
pub fn arrow_type(t: &DataType) -> Option<ArrowType> {
    match t {
        DataType::Boolean => Some(ArrowType::Boolean),
        DataType::Float32 => Some(ArrowType::Float32),
        DataType::Float64 => Some(ArrowType::Float64),
        DataType::String | DataType::Null => Some(ArrowType::Utf8),
        t if t.is_integer() => Some(ArrowType::Int64),
        _ => None,
    }
}

/// How `misfit query` and `misfit findings` print a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Polars' table, for a terminal.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
    /// A Parquet file (needs a file to write to).
    Parquet,
}

impl Format {
    /// Parses `table`, `csv`, `json` (or `jsonl`) or `parquet`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "table" => Some(Format::Table),
            "csv" => Some(Format::Csv),
            "json" | "jsonl" | "ndjson" => Some(Format::Json),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// A cell as JSON: numbers, text, booleans, null, arrays as JSON arrays.
pub fn json_value(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AnyValue::Null => J::Null,
        AnyValue::Boolean(b) => J::Bool(*b),
        AnyValue::String(s) => J::String(s.to_string()),
        AnyValue::StringOwned(s) => J::String(s.to_string()),
        AnyValue::Float32(x) => serde_json::Number::from_f64(*x as f64).map_or(J::Null, J::Number),
        AnyValue::Float64(x) => serde_json::Number::from_f64(*x).map_or(J::Null, J::Number),
        AnyValue::List(s) | AnyValue::Array(s, _) => J::Array(s.iter().map(|v| json_value(&v)).collect()),
        v if v.is_integer() => match v.extract::<i64>() {
            Some(i) => J::from(i),
            None => J::String(v.to_string()),
        },
        v => J::String(v.to_string()),
    }
}

/// A cell as CSV text: empty for null, arrays as JSON.
/// A cell of a CSV file: text through [`crate::escape::csv_cell`] (a label
/// `=2+5` is no formula in a spreadsheet).
fn csv_text(v: &AnyValue) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::String(s) => crate::escape::csv_cell(s),
        AnyValue::StringOwned(s) => crate::escape::csv_cell(s),
        AnyValue::List(_) | AnyValue::Array(..) => json_value(v).to_string(),
        v => json_value(v).to_string().trim_matches('"').to_string(),
    }
}

/// Writes `df` in `format` to `out` (a file, written under a temporary name
/// and renamed into place) or standard output.
pub fn write(df: &mut DataFrame, format: Format, out: Option<&Path>) -> Result<()> {
    let target = out.map(|p| p.display().to_string()).unwrap_or_else(|| "standard output".into());
    let io = |e: std::io::Error| Error::Usage(format!("{target}: {e}"));
    if format == Format::Parquet {
        let path = out.ok_or_else(|| Error::Usage("--format parquet writes a file: give --out FILE".into()))?;
        let mut file = crate::atomic::AtomicFile::create(path)?;
        ParquetWriter::new(file.writer()).finish(df).map_err(|e| Error::Usage(format!("{target}: {e}")))?;
        return file.commit();
    }
    let mut bytes = Vec::new();
    match format {
        // A table is read on a terminal: no control sequence from the data.
        Format::Table => writeln!(bytes, "{}", crate::escape::terminal(&df.to_string())).map_err(io)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut bytes);
            let names: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
            w.write_record(&names).map_err(|e| Error::Usage(format!("{target}: {e}")))?;
            for i in 0..df.height() {
                let row = df.get_row(i).map_err(|e| Error::Usage(e.to_string()))?;
                w.write_record(row.0.iter().map(csv_text)).map_err(|e| Error::Usage(format!("{target}: {e}")))?;
            }
            w.flush().map_err(io)?;
        }
        Format::Json => {
            let names: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
            for i in 0..df.height() {
                let row = df.get_row(i).map_err(|e| Error::Usage(e.to_string()))?;
                let object: serde_json::Map<String, serde_json::Value> =
                    names.iter().cloned().zip(row.0.iter().map(json_value)).collect();
                writeln!(bytes, "{}", serde_json::Value::Object(object)).map_err(io)?;
            }
        }
        Format::Parquet => unreachable!("written above"),
    }
    match out {
        Some(path) => crate::atomic::write(path, &bytes),
        None => std::io::stdout().write_all(&bytes).map_err(io),
    }
}
