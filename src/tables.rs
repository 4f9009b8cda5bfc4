//! The Parquet output layer: arrow RecordBatches written as zstd-compressed
//! Parquet with documented columns and key-value metadata (misfit version,
//! run configuration, dataset fingerprint), under a temporary name renamed
//! into place when complete. Every table is keyed by image `id`, so tables
//! join on it.

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::atomic::AtomicFile;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};

/// Key-value metadata key for the misfit version that wrote a table.
pub const META_VERSION: &str = "misfit.version";
/// Key for the run configuration (JSON).
pub const META_CONFIG: &str = "misfit.config";
/// Key for the dataset fingerprint (see [`Dataset::fingerprint`]).
pub const META_FINGERPRINT: &str = "misfit.dataset_fingerprint";
/// Field metadata key holding a column's description.
pub const FIELD_DESCRIPTION: &str = "description";

/// What every table of a run carries in its metadata.
#[derive(Clone, Debug)]
pub struct TableMeta {
    /// The run configuration, as JSON.
    pub config_json: String,
    /// The dataset fingerprint.
    pub dataset_fingerprint: String,
}

/// A column definition: name, type, nullability, description.
pub fn field(name: &str, ty: DataType, nullable: bool, description: &str) -> Field {
    Field::new(name, ty, nullable)
        .with_metadata(HashMap::from([(FIELD_DESCRIPTION.to_string(), description.to_string())]))
}

/// Writes one batch as a Parquet table at `path`, atomically.
pub fn write(path: &Path, batch: &RecordBatch, meta: &TableMeta) -> Result<()> {
    let fail = |e: parquet::errors::ParquetError| Error::io(path, std::io::Error::other(e));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
        .set_created_by(format!("misfit {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(META_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
            KeyValue::new(META_CONFIG.to_string(), meta.config_json.clone()),
            KeyValue::new(META_FINGERPRINT.to_string(), meta.dataset_fingerprint.clone()),
        ]))
        .build();
    let mut file = AtomicFile::create(path)?;
    let mut writer = ArrowWriter::try_new(file.writer(), batch.schema(), Some(props)).map_err(fail)?;
    writer.write(batch).map_err(fail)?;
    writer.close().map_err(fail)?;
    file.commit()
}

/// `samples.parquet`: one row per image of both splits, train first.
///
/// | column | type | meaning |
/// |---|---|---|
/// | id | string | the image's id (path in the archive, file:record, ...) |
/// | split | string | `train` or `test` |
/// | label | int32 | the given label, as a class index |
/// | label_name | string | the given label's class name |
pub fn samples(ds: &Dataset) -> RecordBatch {
    let schema = Schema::new(vec![
        field("id", DataType::Utf8, false, "image id, unique in the dataset; the key every table joins on"),
        field("split", DataType::Utf8, false, "train or test"),
        field("label", DataType::Int32, false, "given label, as a class index"),
        field("label_name", DataType::Utf8, false, "given label, as a class name"),
    ]);
    let (mut ids, mut splits, mut labels, mut names) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for split in Split::ALL {
        let set = ds.split(split);
        for (id, &l) in set.ids.iter().zip(&set.labels) {
            ids.push(id.as_str());
            splits.push(split.as_str());
            labels.push(l as i32);
            names.push(ds.classes[l as usize].as_str());
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(StringArray::from(splits)),
        Arc::new(Int32Array::from(labels)),
        Arc::new(StringArray::from(names)),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("columns match the schema")
}

/// `planted.parquet` (demo only): the planted problems, keyed by image id.
///
/// | column | type | meaning |
/// |---|---|---|
/// | id | string | the image's id |
/// | split | string | `train` or `test` |
/// | problem | string | `label_flip`, `duplicate_exact`, `duplicate_near`, `outlier` |
/// | given_label | int32 | the label the image carries |
/// | true_label | int32, null | its true class (null for outliers) |
/// | related_id | string, null | for duplicates, the image copied |
pub fn planted(truth: &crate::data::demo::DemoTruth) -> RecordBatch {
    let p = &truth.problems;
    let schema = Schema::new(vec![
        field("id", DataType::Utf8, false, "image id"),
        field("split", DataType::Utf8, false, "train or test"),
        field("problem", DataType::Utf8, false, "label_flip, duplicate_exact, duplicate_near or outlier"),
        field("given_label", DataType::Int32, false, "the label the image carries, as a class index"),
        field("true_label", DataType::Int32, true, "the image's true class; null for outliers"),
        field("related_id", DataType::Utf8, true, "for duplicates, the id of the image copied"),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(p.iter().map(|x| x.id.as_str()))),
        Arc::new(StringArray::from_iter_values(p.iter().map(|x| x.split.as_str()))),
        Arc::new(StringArray::from_iter_values(p.iter().map(|x| x.kind.as_str()))),
        Arc::new(Int32Array::from_iter_values(p.iter().map(|x| x.given_label as i32))),
        Arc::new(Int32Array::from_iter(p.iter().map(|x| x.true_label.map(|l| l as i32)))),
        Arc::new(StringArray::from_iter(p.iter().map(|x| x.related_id.as_deref()))),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("columns match the schema")
}
