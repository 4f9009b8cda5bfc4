//! Labels files (CSV and Parquet) that replace a dataset's labels.

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use misfit::data::LoadOptions;
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::{tempdir, TempDir};

use crate::util::{load_err, load_ok, small_folder, write_tree};

fn dataset() -> TempDir {
    let dir = tempdir().unwrap();
    write_tree(&dir.path().join("ds"), &small_folder(""));
    dir
}

const ALL_IDS: [&str; 8] = [
    "train/cat/000.png",
    "train/cat/001.png",
    "train/cat/002.png",
    "train/dog/000.png",
    "train/dog/001.png",
    "train/dog/002.jpg",
    "test/cat/t0.png",
    "test/dog/t0.png",
];

fn with_labels(dir: &TempDir, name: &str, body: &str) -> (String, LoadOptions) {
    let f = dir.path().join(name);
    std::fs::write(&f, body).unwrap();
    (dir.path().join("ds").display().to_string(), LoadOptions { labels: Some(f), ..Default::default() })
}

#[test]
fn a_csv_replaces_labels_by_name_or_index() {
    let dir = dataset();
    // Every image swapped to the other class; names and indices mixed.
    let mut body = String::from("id,label\n");
    for (i, id) in ALL_IDS.iter().enumerate() {
        let swapped = if id.contains("/cat/") { "dog" } else { "cat" };
        body.push_str(&format!(
            "{id},{}\n",
            if i % 2 == 0 { swapped.to_string() } else { (if swapped == "dog" { 1 } else { 0 }).to_string() }
        ));
    }
    let (spec, opts) = with_labels(&dir, "vendor.csv", &body);
    let ds = load_ok(&spec, &opts);
    assert_eq!(ds.train.labels, vec![1, 1, 1, 0, 0, 0]);
    assert_eq!(ds.test.labels, vec![1, 0]);
}

#[test]
fn a_parquet_labels_file_works_too() {
    let dir = dataset();
    let ids = StringArray::from(ALL_IDS.to_vec());
    let labels = StringArray::from(ALL_IDS.iter().map(|_| "dog").collect::<Vec<_>>());
    let schema = Schema::new(vec![Field::new("id", DataType::Utf8, false), Field::new("label", DataType::Utf8, false)]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids), Arc::new(labels)]).unwrap();
    let f: PathBuf = dir.path().join("labels.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&f).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let opts = LoadOptions { labels: Some(f), ..Default::default() };
    // Every image labelled dog leaves cat with no training image: that is an error too.
    let err = load_err(dir.path().join("ds").to_str().unwrap(), &opts);
    assert!(err.contains("cat") && err.contains("no training image"), "{err}");
}

#[test]
fn unknown_ids_missing_images_and_bad_labels_are_named() {
    let dir = dataset();
    let mut body = String::from("id,label\n");
    for id in ALL_IDS {
        body.push_str(&format!("{id},cat\n"));
    }
    let (spec, opts) = with_labels(&dir, "extra.csv", &format!("{body}train/cat/999.png,dog\n"));
    let err = load_err(&spec, &opts);
    assert!(err.contains("extra.csv") && err.contains("train/cat/999.png") && err.contains("match no image"), "{err}");

    let short: String = body.lines().filter(|l| !l.contains("test/dog")).map(|l| format!("{l}\n")).collect();
    let (spec, opts) = with_labels(&dir, "short.csv", &short);
    let err = load_err(&spec, &opts);
    assert!(err.contains("short.csv") && err.contains("test/dog/t0.png") && err.contains("no label"), "{err}");

    let bad = body.replace("train/dog/001.png,cat", "train/dog/001.png,horse");
    let (spec, opts) = with_labels(&dir, "bad.csv", &bad);
    let err = load_err(&spec, &opts);
    assert!(err.contains("bad.csv") && err.contains("line 6") && err.contains("horse"), "{err}");

    let twice = format!("{body}train/cat/000.png,dog\n");
    let (spec, opts) = with_labels(&dir, "twice.csv", &twice);
    let err = load_err(&spec, &opts);
    assert!(err.contains("twice.csv") && err.contains("line 10") && err.contains("already has a label"), "{err}");
}
