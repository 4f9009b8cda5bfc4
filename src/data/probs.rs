//! Out-of-sample probabilities, labels, embeddings and ids read from files
//! (Parquet, or NumPy `.npy` in every byte order, memory order and number
//! type numpy writes): what `misfit score` scores instead of a model
//! trained here.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Problem, Result};
use crate::quality;

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

/// Reads a `.npy` array of numbers as f64 in row-major (C) order, with its
/// shape: whatever numpy writes for numbers, C or Fortran order (a Fortran
/// array is transposed on reading), little or big endian, float16/32/64,
/// int8 to int64, uint8 to uint64 and bool. The header is read by npyz, the
/// values decoded here (npyz knows no float16 without a feature, and its
/// reader needs the element type before the file is seen).
pub(crate) fn read_npy(path: &Path) -> Result<(Vec<f64>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad =
        |e: &dyn std::fmt::Display| -> Error { Problem::file(path, format!("not a readable .npy array: {e}")).into() };
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(&e))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let fortran = npy.order() == npyz::Order::Fortran;
    let descr = npy.dtype().descr();
    let descr = descr.trim_matches('\'');
    let unsupported = || -> Error {
        Problem::file(
            path,
            format!("dtype {descr} is not supported (float16/32/64, int8 to int64, uint8 to uint64, bool)"),
        )
        .into()
    };
    let mut chars = descr.chars();
    let big = match chars.next() {
        Some('>') => true,
        Some('<') | Some('|') | Some('=') => cfg!(target_endian = "big"),
        _ => return Err(unsupported()),
    };
    let kind = chars.next().ok_or_else(unsupported)?;
    let size: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    let decode: fn([u8; 8]) -> f64 = match (kind, size) {
        ('f', 2) => |b| half_to_f64(u16::from_le_bytes([b[0], b[1]])),
        ('f', 4) => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        ('f', 8) => f64::from_le_bytes,
        ('i', 1) => |b| b[0] as i8 as f64,
        ('i', 2) => |b| i16::from_le_bytes([b[0], b[1]]) as f64,
        ('i', 4) => |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        ('i', 8) => |b| i64::from_le_bytes(b) as f64,
        ('u', 1) | ('b', 1) => |b| b[0] as f64,
        ('u', 2) => |b| u16::from_le_bytes([b[0], b[1]]) as f64,
        ('u', 4) => |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        ('u', 8) => |b| u64::from_le_bytes(b) as f64,
        _ => return Err(unsupported()),
    };
    let count: usize = shape.iter().product();
    let data: &[u8] = npy.into_inner();
    if data.len() < count * size {
        return Err(bad(&format!("{} bytes of data for {count} values of {size} bytes", data.len())));
    }
    let values: Vec<f64> = data
        .chunks_exact(size)
        .take(count)
        .map(|c| {
            // Little-endian bytes in the low end of 8 (the decoders read only `size` of them).
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(c);
            if big {
                b[..size].reverse();
            }
            decode(b)
        })
        .collect();
    Ok((if fortran { fortran_to_c(&values, &shape) } else { values }, shape))
}

/// An IEEE half-precision value.
fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Values stored in Fortran (column-major) order, rearranged to C (row-major) order.
fn fortran_to_c(values: &[f64], shape: &[usize]) -> Vec<f64> {
    if shape.len() < 2 {
        return values.to_vec();
    }
    // Fortran strides: the first index varies fastest.
    let mut strides = vec![1usize; shape.len()];
    for d in 1..shape.len() {
        strides[d] = strides[d - 1] * shape[d - 1];
    }
    let mut out = Vec::with_capacity(values.len());
    let mut index = vec![0usize; shape.len()];
    for _ in 0..values.len() {
        out.push(values[index.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()]);
        // Next C-order index: the last index varies fastest.
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
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
        if name == "embedding" {
            out.extend(embedding_rows(v.values(), v.len()));
        } else {
            out.extend(v.values().iter().map(|&x| x as f32));
        }
    }
    Ok((out, width.unwrap_or(0)))
}

/// `[n, dim]` embeddings as `f32`. A finite row whose largest absolute value
/// lies outside `f32`'s comfortable range (1e-30 to 1e30) is first divided
/// by that value: only its direction counts (rows are normalised), and cast
/// as it is it would become zeros or infinities.
fn embedding_rows(v: &[f64], dim: usize) -> Vec<f32> {
    if dim == 0 {
        return Vec::new();
    }
    v.chunks(dim)
        .flat_map(|row| {
            let m = row.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let by = if m.is_finite() && m > 0.0 && !(1e-30..=1e30).contains(&m) { m } else { 1.0 };
            row.iter().map(move |&x| (x / by) as f32)
        })
        .collect()
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
            Some((embedding_rows(&v, shape[1]), shape[1]))
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
        quality::check_embeddings(&src.display().to_string(), "", e, *dim)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.npy` file written by hand (format 1.0): the header dictionary
    /// padded to 64 bytes, then the raw values.
    fn npy(dir: &Path, name: &str, descr: &str, fortran: bool, shape: &str, data: &[u8]) -> PathBuf {
        let dict = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        let mut header = dict.into_bytes();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header);
        bytes.extend(data);
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn every_order_byte_order_and_number_type_numpy_writes_reads_alike() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The 2 x 3 array [[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]], in every layout.
        let want = vec![0.5, 0.25, 0.25, 0.125, 0.375, 0.5];
        let c_order = want.clone();
        let f_order = vec![0.5, 0.125, 0.25, 0.375, 0.25, 0.5];
        let f64le = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let f64be = |v: &[f64]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
        let f32be = |v: &[f64]| v.iter().flat_map(|&x| (x as f32).to_be_bytes()).collect::<Vec<u8>>();
        let f32le = |v: &[f64]| v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect::<Vec<u8>>();
        // float16 bit patterns of 0.5, 0.25, 0.125, 0.375.
        let half = |x: f64| -> u16 {
            match x {
                0.5 => 0x3800,
                0.25 => 0x3400,
                0.125 => 0x3000,
                0.375 => 0x3600,
                _ => unreachable!(),
            }
        };
        let f16le = |v: &[f64]| v.iter().flat_map(|&x| half(x).to_le_bytes()).collect::<Vec<u8>>();
        let f16be = |v: &[f64]| v.iter().flat_map(|&x| half(x).to_be_bytes()).collect::<Vec<u8>>();
        let cases = [
            ("c8.npy", "<f8", false, f64le(&c_order)),
            ("f8.npy", "<f8", true, f64le(&f_order)),
            ("c8be.npy", ">f8", false, f64be(&c_order)),
            ("f8be.npy", ">f8", true, f64be(&f_order)),
            ("c4.npy", "<f4", false, f32le(&c_order)),
            ("f4be.npy", ">f4", true, f32be(&f_order)),
            ("c2.npy", "<f2", false, f16le(&c_order)),
            ("f2be.npy", ">f2", true, f16be(&f_order)),
        ];
        for (name, descr, fortran, data) in cases {
            let path = npy(d, name, descr, fortran, "(2, 3)", &data);
            assert_eq!(read_npy(&path).unwrap(), (want.clone(), vec![2, 3]), "{name}");
        }
        // Labels [2, 0, 1] as every integer type, both byte orders.
        let labels = [2i64, 0, 1];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("|i1", labels.iter().map(|&l| l as i8 as u8).collect()),
            ("|u1", labels.iter().map(|&l| l as u8).collect()),
            ("<i2", labels.iter().flat_map(|&l| (l as i16).to_le_bytes()).collect()),
            (">i2", labels.iter().flat_map(|&l| (l as i16).to_be_bytes()).collect()),
            ("<i4", labels.iter().flat_map(|&l| (l as i32).to_le_bytes()).collect()),
            (">i4", labels.iter().flat_map(|&l| (l as i32).to_be_bytes()).collect()),
            ("<i8", labels.iter().flat_map(|&l| l.to_le_bytes()).collect()),
            (">i8", labels.iter().flat_map(|&l| l.to_be_bytes()).collect()),
            ("<u4", labels.iter().flat_map(|&l| (l as u32).to_le_bytes()).collect()),
            (">u8", labels.iter().flat_map(|&l| (l as u64).to_be_bytes()).collect()),
        ];
        for (descr, data) in cases {
            let path = npy(d, "labels.npy", descr, false, "(3,)", &data);
            assert_eq!(read_npy(&path).unwrap(), (vec![2.0, 0.0, 1.0], vec![3]), "{descr}");
        }
        // Negative int8, and a 3-D Fortran array back in C order.
        let path = npy(d, "neg.npy", "|i1", false, "(2,)", &[0xff, 0x80]);
        assert_eq!(read_npy(&path).unwrap().0, vec![-1.0, -128.0]);
        // C value at (i, j, l) is 100 i + 10 j + l; Fortran stores i fastest.
        let mut f = Vec::new();
        for l in 0..2 {
            for j in 0..3 {
                for i in 0..2 {
                    f.push((100 * i + 10 * j + l) as f64);
                }
            }
        }
        let path = npy(d, "f3.npy", "<f8", true, "(2, 3, 2)", &f64le(&f));
        let c: Vec<f64> =
            (0..2).flat_map(|i| (0..3).flat_map(move |j| (0..2).map(move |l| (100 * i + 10 * j + l) as f64))).collect();
        assert_eq!(read_npy(&path).unwrap(), (c, vec![2, 3, 2]));
        // What is not a number is refused, naming the dtype.
        let path = npy(d, "s.npy", "<U3", false, "(1,)", &[0; 12]);
        assert!(read_npy(&path).unwrap_err().to_string().contains("dtype <U3 is not supported"));
        let path = npy(d, "c.npy", "<c16", false, "(1,)", &[0; 16]);
        assert!(read_npy(&path).unwrap_err().to_string().contains("not supported"));
    }

    #[test]
    fn half_precision_decodes_normals_subnormals_and_infinities() {
        assert_eq!(half_to_f64(0x3c00), 1.0);
        assert_eq!(half_to_f64(0xc000), -2.0);
        assert_eq!(half_to_f64(0x7bff), 65504.0);
        assert_eq!(half_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(half_to_f64(0x7c00), f64::INFINITY);
        assert!(half_to_f64(0x7e00).is_nan());
    }
}
