//! The Parquet output layer: arrow RecordBatches written as zstd-compressed
//! Parquet with documented columns and key-value metadata (misfit version,
//! run configuration, dataset fingerprint), under a temporary name renamed
//! into place when complete. Every table is keyed by image `id`, so tables
//! join on it.

use arrow::array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
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

/// Builds a RecordBatch column by column, each with its description.
#[derive(Default)]
pub struct TableBuilder {
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
}

impl TableBuilder {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, name: &str, nullable: bool, description: &str, array: ArrayRef) -> Self {
        self.fields.push(field(name, array.data_type().clone(), nullable, description));
        self.columns.push(array);
        self
    }

    /// A text column.
    pub fn utf8<S: AsRef<str>>(self, name: &str, description: &str, values: impl IntoIterator<Item = S>) -> Self {
        self.push(name, false, description, Arc::new(StringArray::from_iter_values(values)))
    }

    /// A text column with nulls.
    pub fn opt_utf8<S: AsRef<str>>(
        self,
        name: &str,
        description: &str,
        values: impl IntoIterator<Item = Option<S>>,
    ) -> Self {
        self.push(name, true, description, Arc::new(StringArray::from_iter(values)))
    }

    /// A 32-bit integer column.
    pub fn i32(self, name: &str, description: &str, values: impl IntoIterator<Item = i32>) -> Self {
        self.push(name, false, description, Arc::new(Int32Array::from_iter_values(values)))
    }

    /// A 32-bit integer column with nulls.
    pub fn opt_i32(self, name: &str, description: &str, values: impl IntoIterator<Item = Option<i32>>) -> Self {
        self.push(name, true, description, Arc::new(Int32Array::from_iter(values)))
    }

    /// A 64-bit integer column.
    pub fn i64(self, name: &str, description: &str, values: impl IntoIterator<Item = i64>) -> Self {
        self.push(name, false, description, Arc::new(Int64Array::from_iter_values(values)))
    }

    /// A 32-bit float column.
    pub fn f32(self, name: &str, description: &str, values: impl IntoIterator<Item = f32>) -> Self {
        self.push(name, false, description, Arc::new(Float32Array::from_iter_values(values)))
    }

    /// A 32-bit float column with nulls.
    pub fn opt_f32(self, name: &str, description: &str, values: impl IntoIterator<Item = Option<f32>>) -> Self {
        self.push(name, true, description, Arc::new(Float32Array::from_iter(values)))
    }

    /// A 64-bit float column.
    pub fn f64(self, name: &str, description: &str, values: impl IntoIterator<Item = f64>) -> Self {
        self.push(name, false, description, Arc::new(Float64Array::from_iter_values(values)))
    }

    /// A boolean column.
    pub fn bool(self, name: &str, description: &str, values: impl IntoIterator<Item = bool>) -> Self {
        self.push(name, false, description, Arc::new(BooleanArray::from_iter(values.into_iter().map(Some))))
    }

    /// A fixed-size list of f32 per row (`width` values each), from
    /// row-major `values`; Polars reads it as `Array(Float32, width)`.
    pub fn f32_rows(self, name: &str, description: &str, values: Vec<f32>, width: usize) -> Self {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let array = FixedSizeListArray::try_new(item, width as i32, Arc::new(Float32Array::from(values)), None)
            .expect("values are whole rows");
        self.push(name, false, description, Arc::new(array))
    }

    /// The finished batch.
    pub fn finish(self) -> RecordBatch {
        RecordBatch::try_new(Arc::new(Schema::new(self.fields)), self.columns).expect("columns of equal length")
    }
}

/// The columns of `samples.parquet` every run has, for both splits (train
/// rows first, in dataset order; every later column follows that order):
///
/// | column | type | meaning |
/// |---|---|---|
/// | id | string | the image's id (path in the archive, file:record, ...) |
/// | split | string | `train` or `test` |
/// | label | int32 | the given label, as a class index |
/// | label_name | string | the given label's class name |
pub fn samples(ds: &Dataset) -> TableBuilder {
    let rows =
        || Split::ALL.into_iter().flat_map(|s| ds.split(s).ids.iter().zip(&ds.split(s).labels).map(move |r| (s, r)));
    TableBuilder::new()
        .utf8("id", "image id, unique in the dataset; the key every table joins on", rows().map(|(_, (id, _))| id))
        .utf8("split", "train or test", rows().map(|(s, _)| s.as_str()))
        .i32("label", "given label, as a class index", rows().map(|(_, (_, &l))| l as i32))
        .utf8("label_name", "given label, as a class name", rows().map(|(_, (_, &l))| ds.classes[l as usize].as_str()))
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
    TableBuilder::new()
        .utf8("id", "image id", p.iter().map(|x| x.id.as_str()))
        .utf8("split", "train or test", p.iter().map(|x| x.split.as_str()))
        .utf8("problem", "label_flip, duplicate_exact, duplicate_near or outlier", p.iter().map(|x| x.kind.as_str()))
        .i32("given_label", "the label the image carries, as a class index", p.iter().map(|x| x.given_label as i32))
        .opt_i32(
            "true_label",
            "the image's true class; null for outliers",
            p.iter().map(|x| x.true_label.map(|l| l as i32)),
        )
        .opt_utf8("related_id", "for duplicates, the id of the image copied", p.iter().map(|x| x.related_id.as_deref()))
        .finish()
}

/// The model's columns of `samples.parquet`, for both splits in sample order:
///
/// | column | type | meaning |
/// |---|---|---|
/// | fold | int32, null | train: the cross-validation fold that held the image out; test, or an imported model: null |
/// | probs | array(float32, classes) | softmax probabilities: out-of-sample for train (from the fold model), final model for test |
/// | pred, pred_name | int32, string | arg-max class |
/// | loss | float32 | `-ln probs[label]` |
/// | self_confidence | float32 | `probs[label]` |
/// | margin | float32 | `probs[label]` minus the largest other probability |
/// | aum | float32, null | train: area under the logit margin over the final model's training epochs |
/// | forgetting_events | int32, null | train: correct-to-wrong transitions between epochs |
/// | first_learned_epoch | int32, null | train: first epoch (1-based) classified correctly; null if never |
pub fn model_columns(
    b: TableBuilder,
    classes: &[String],
    out: &crate::evaluate::SampleOutputs,
    fold: &[Option<i32>],
    dynamics: Option<&crate::train::Dynamics>,
) -> TableBuilder {
    let n = out.pred.len();
    let dyn_col = |f: &dyn Fn(&crate::train::Dynamics, usize) -> Option<f32>| -> Vec<Option<f32>> {
        (0..n).map(|i| dynamics.filter(|d| i < d.n).and_then(|d| f(d, i))).collect()
    };
    let aum = dyn_col(&|d, i| Some(d.aum(i)));
    let forgetting = dyn_col(&|d, i| Some(d.forgetting_events(i) as f32));
    let first = dyn_col(&|d, i| d.first_learned(i).map(|e| e as f32));
    b.opt_i32(
        "fold",
        "cross-validation fold that held the image out (train); null for test or an imported model",
        fold.iter().copied(),
    )
    .f32_rows("probs", "softmax probabilities; out-of-sample for train images", out.probs.clone(), out.classes)
    .i32("pred", "predicted class index (arg-max of probs)", out.pred.iter().map(|&p| p as i32))
    .utf8("pred_name", "predicted class name", out.pred.iter().map(|&p| classes[p as usize].as_str()))
    .f32("loss", "cross-entropy of the given label, -ln probs[label]", out.loss.iter().copied())
    .f32("self_confidence", "probability of the given label", out.self_confidence.iter().copied())
    .f32("margin", "probability of the given label minus the largest other probability", out.margin.iter().copied())
    .opt_f32("aum", "area under the logit margin over training epochs (train only)", aum)
    .opt_i32(
        "forgetting_events",
        "times the image went from correct to wrong between epochs (train only)",
        forgetting.iter().map(|v| v.map(|x| x as i32)),
    )
    .opt_i32(
        "first_learned_epoch",
        "first epoch (1-based) at which the image was classified correctly (train only)",
        first.iter().map(|v| v.map(|x| x as i32)),
    )
}

/// `dynamics.parquet`: one row per training image and epoch of the final model's training.
///
/// | column | type | meaning |
/// |---|---|---|
/// | id | string | training image id |
/// | epoch | int32 | 1-based epoch |
/// | loss | float32 | cross-entropy of the given label in that epoch's training pass |
/// | margin | float32 | logit of the given label minus the largest other logit |
/// | correct | bool | whether the given label had the largest logit |
pub fn dynamics(ids: &[String], d: &crate::train::Dynamics) -> RecordBatch {
    let rows = || (0..d.n).flat_map(move |i| (0..d.epochs).map(move |e| (i, e)));
    TableBuilder::new()
        .utf8("id", "training image id", rows().map(|(i, _)| ids[i].as_str()))
        .i32("epoch", "1-based epoch", rows().map(|(_, e)| e as i32 + 1))
        .f32("loss", "cross-entropy of the given label in the training pass", rows().map(|(i, e)| d.loss[e * d.n + i]))
        .f32(
            "margin",
            "logit of the given label minus the largest other logit",
            rows().map(|(i, e)| d.margin[e * d.n + i]),
        )
        .bool("correct", "whether the given label had the largest logit", rows().map(|(i, e)| d.correct[e * d.n + i]))
        .finish()
}

/// `confusion.parquet`: one row per (given, predicted) class pair of the test split, zero counts included.
///
/// | column | type | meaning |
/// |---|---|---|
/// | given, given_name | int32, string | the label |
/// | predicted, predicted_name | int32, string | the model's prediction |
/// | count | int64 | test images with that label and prediction |
/// | share | float64 | count over the test images of the given class |
pub fn confusion(classes: &[String], confusion: &[Vec<usize>]) -> RecordBatch {
    let k = classes.len();
    let rows = || (0..k).flat_map(move |g| (0..k).map(move |p| (g, p)));
    let totals: Vec<usize> = confusion.iter().map(|r| r.iter().sum()).collect();
    TableBuilder::new()
        .i32("given", "given label (class index)", rows().map(|(g, _)| g as i32))
        .utf8("given_name", "given label (class name)", rows().map(|(g, _)| classes[g].as_str()))
        .i32("predicted", "predicted class index", rows().map(|(_, p)| p as i32))
        .utf8("predicted_name", "predicted class name", rows().map(|(_, p)| classes[p].as_str()))
        .i64("count", "test images with this label and prediction", rows().map(|(g, p)| confusion[g][p] as i64))
        .f64(
            "share",
            "count over the test images of the given class",
            rows().map(|(g, p)| if totals[g] > 0 { confusion[g][p] as f64 / totals[g] as f64 } else { 0.0 }),
        )
        .finish()
}

/// `classes.parquet`: one row per class; later stages add columns.
///
/// | column | type | meaning |
/// |---|---|---|
/// | class, class_name | int32, string | the class |
/// | train_images, test_images | int64 | images with that label |
/// | test_misses | int64 | test images of the class predicted as another |
/// | miss_rate, miss_rate_low, miss_rate_high | float64 | misses over test images, with its 95% Wilson interval |
pub fn classes(ds: &Dataset, eval: &crate::evaluate::Evaluation) -> RecordBatch {
    let k = ds.classes.len();
    let train = ds.train.class_counts(k);
    let c = &eval.classes;
    TableBuilder::new()
        .i32("class", "class index", (0..k).map(|i| i as i32))
        .utf8("class_name", "class name", ds.classes.iter())
        .i64("train_images", "training images with this label", train.iter().map(|&n| n as i64))
        .i64("test_images", "test images with this label", c.iter().map(|r| r.images as i64))
        .i64("test_misses", "test images of this class predicted as another", c.iter().map(|r| r.misses as i64))
        .f64("miss_rate", "test misses over test images", c.iter().map(|r| r.miss_rate))
        .f64("miss_rate_low", "95% Wilson interval, low end", c.iter().map(|r| r.miss_rate_low))
        .f64("miss_rate_high", "95% Wilson interval, high end", c.iter().map(|r| r.miss_rate_high))
        .finish()
}
