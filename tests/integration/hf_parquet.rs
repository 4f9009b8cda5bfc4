//! Hugging Face-style image Parquet files written here with arrow.

use arrow::array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use misfit::data::LoadOptions;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::sync::Arc;
use tempfile::tempdir;

use crate::util::{load_err, load_ok, pattern, png};

const HF_META: &str = r#"{"info": {"features": {"img": {"_type": "Image"}, "label": {"names": ["plane", "car", "bird"], "_type": "ClassLabel"}}}}"#;

/// Writes rows of (image bytes or null, path or null, label or null).
pub(crate) fn write_hf(path: &Path, rows: &[(Option<Vec<u8>>, Option<&str>, Option<i64>)], with_meta: bool) {
    let fields =
        Fields::from(vec![Field::new("bytes", DataType::Binary, true), Field::new("path", DataType::Utf8, true)]);
    let bytes: BinaryArray = rows.iter().map(|r| r.0.as_deref()).collect();
    let paths: StringArray = rows.iter().map(|r| r.1).collect();
    let img = StructArray::new(fields.clone(), vec![Arc::new(bytes) as ArrayRef, Arc::new(paths)], None);
    let labels: Int64Array = rows.iter().map(|r| r.2).collect();
    let schema = Schema::new(vec![
        Field::new("img", DataType::Struct(fields), true),
        Field::new("label", DataType::Int64, true),
    ]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(img), Arc::new(labels)]).unwrap();
    let props = WriterProperties::builder()
        .set_key_value_metadata(with_meta.then(|| vec![KeyValue::new("huggingface".into(), HF_META.to_string())]))
        .build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// `n` valid rows: 4x4 PNG images whose pixels encode `offset + i`, labels cycling through the 3 classes.
pub(crate) fn good_rows(n: usize, offset: u8) -> Vec<(Option<Vec<u8>>, Option<&'static str>, Option<i64>)> {
    (0..n).map(|i| (Some(png(&pattern(offset + i as u8, 4, 4), 4, 4)), None, Some((i % 3) as i64))).collect()
}

#[test]
fn a_folder_of_split_files_loads_with_class_names_from_metadata() {
    let dir = tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plain_text")).unwrap();
    write_hf(&dir.path().join("plain_text/train-00000-of-00001.parquet"), &good_rows(6, 0), true);
    write_hf(&dir.path().join("plain_text/test-00000-of-00001.parquet"), &good_rows(3, 50), true);
    let ds = load_ok(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(ds.source.contains("Hugging Face"), "{}", ds.source);
    assert_eq!(ds.classes, vec!["plane", "car", "bird"]);
    assert_eq!((ds.train.len(), ds.test.len(), ds.height, ds.width), (6, 3, 4, 4));
    assert_eq!(ds.train.ids[1], "train-00000-of-00001.parquet:1");
    assert_eq!(ds.train.labels, vec![0, 1, 2, 0, 1, 2]);
    assert_eq!(&ds.test.pixels[..48], pattern(50, 4, 4).as_slice());
}

#[test]
fn image_paths_become_ids_and_classes_can_come_from_the_flag() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("train.parquet");
    let rows: Vec<_> = ["a.png", "b.png", "c.png"]
        .iter()
        .enumerate()
        .map(|(i, p)| (Some(png(&pattern(i as u8, 4, 4), 4, 4)), Some(*p), Some(i as i64)))
        .collect();
    write_hf(&file, &rows, false);
    let err = load_err(file.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train.parquet") && err.contains("--classes"), "{err}");
    let opts = LoadOptions { classes: Some(vec!["x".into(), "y".into(), "z".into()]), ..Default::default() };
    let ds = load_ok(file.to_str().unwrap(), &opts);
    assert_eq!(ds.train.ids, vec!["a.png", "b.png", "c.png"]);
    assert_eq!(ds.classes[2], "z");
}

#[test]
fn a_label_outside_the_classes_names_the_row() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("train-0.parquet");
    let mut rows = good_rows(6, 0);
    rows[4].2 = Some(7);
    write_hf(&file, &rows, true);
    let err = load_err(file.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train-0.parquet") && err.contains("row 4") && err.contains("label 7"), "{err}");
    rows[4].2 = None;
    write_hf(&file, &rows, true);
    let err = load_err(file.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("row 4") && err.contains("null"), "{err}");
}

#[test]
fn a_row_without_image_bytes_or_with_corrupt_bytes_is_named() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("train-0.parquet");
    let mut rows = good_rows(6, 0);
    rows[2].0 = None;
    write_hf(&file, &rows, true);
    let err = load_err(file.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("row 2") && err.contains("no bytes"), "{err}");
    let mut rows = good_rows(6, 0);
    rows[3].0 = Some(b"\xff\xd8\xffnot really a jpeg".to_vec());
    write_hf(&file, &rows, true);
    let err = load_err(file.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train-0.parquet") && err.contains("row 3") && err.contains("corrupt"), "{err}");
}

#[test]
fn malformed_parquet_names_the_file() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("train-0.parquet");
    write_hf(&file, &good_rows(6, 0), true);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 20]).unwrap();
    let err = load_err(file.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train-0.parquet") && err.contains("not a readable Parquet file"), "{err}");
    std::fs::write(&file, b"PAR1 garbage garbage PAR1").unwrap();
    let err = load_err(file.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train-0.parquet") && err.contains("not a readable Parquet file"), "{err}");
}

#[test]
fn a_file_whose_split_cannot_be_told_is_refused() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("mydata.parquet");
    write_hf(&file, &good_rows(3, 0), true);
    let err = load_err(file.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("mydata.parquet") && err.contains("train*.parquet"), "{err}");
}
