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

    /// A 64-bit float column with nulls.
    pub fn opt_f64(self, name: &str, description: &str, values: impl IntoIterator<Item = Option<f64>>) -> Self {
        self.push(name, true, description, Arc::new(Float64Array::from_iter(values)))
    }

    /// A 64-bit integer column with nulls.
    pub fn opt_i64(self, name: &str, description: &str, values: impl IntoIterator<Item = Option<i64>>) -> Self {
        self.push(name, true, description, Arc::new(Int64Array::from_iter(values)))
    }

    /// A boolean column with nulls.
    pub fn opt_bool(self, name: &str, description: &str, values: impl IntoIterator<Item = Option<bool>>) -> Self {
        self.push(name, true, description, Arc::new(BooleanArray::from_iter(values)))
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

/// `classes.parquet`: one row per class; label-quality columns when scores ran.
///
/// | column | type | meaning |
/// |---|---|---|
/// | class, class_name | int32, string | the class |
/// | train_images, test_images | int64 | images with that label |
/// | test_misses | int64 | test images of the class predicted as another |
/// | miss_rate, miss_rate_low, miss_rate_high | float64 | misses over test images, with its 95% Wilson interval |
/// | estimated_noise_rate | float64 | confident learning's estimate of the class's wrong labels |
/// | label_issues, likely_mislabeled, ambiguous, outliers, duplicates | int64 | training images of the class with each flag |
pub fn classes(
    ds: &Dataset,
    eval: &crate::evaluate::Evaluation,
    scores: Option<&crate::scores::Scores>,
    radius: Option<(&[Option<f32>], &[Option<f32>])>,
) -> RecordBatch {
    let k = ds.classes.len();
    let train = ds.train.class_counts(k);
    let c = &eval.classes;
    let b = TableBuilder::new()
        .i32("class", "class index", (0..k).map(|i| i as i32))
        .utf8("class_name", "class name", ds.classes.iter())
        .i64("train_images", "training images with this label", train.iter().map(|&n| n as i64))
        .i64("test_images", "test images with this label", c.iter().map(|r| r.images as i64))
        .i64("test_misses", "test images of this class predicted as another", c.iter().map(|r| r.misses as i64))
        .f64("miss_rate", "test misses over test images", c.iter().map(|r| r.miss_rate))
        .f64("miss_rate_low", "95% Wilson interval, low end", c.iter().map(|r| r.miss_rate_low))
        .f64("miss_rate_high", "95% Wilson interval, high end", c.iter().map(|r| r.miss_rate_high));
    let b = match radius {
        Some((linf, l2)) => b
            .opt_f32(
                "median_radius_linf",
                "median smallest L-inf budget flipping the class's attacked test images (null: above the largest budget)",
                linf.iter().copied(),
            )
            .opt_f32("median_radius_l2", "the same in L2, [0, 1] pixel units", l2.iter().copied()),
        None => b,
    };
    let Some(s) = scores else { return b.finish() };
    let count = |f: &dyn Fn(&crate::scores::ImageScores) -> bool| -> Vec<i64> {
        let mut v = vec![0i64; k];
        for (img, &l) in s.images.iter().zip(&ds.train.labels) {
            v[l as usize] += f(img) as i64;
        }
        v
    };
    b.f64(
        "estimated_noise_rate",
        "confident learning: estimated share of the class's training labels that are wrong",
        s.noise.noise_rate.iter().copied(),
    )
    .i64(
        "label_issues",
        "training images of the class flagged by confident learning",
        count(&|x| x.label_issue == Some(true)),
    )
    .i64(
        "likely_mislabeled",
        "training images of the class flagged likely mislabeled",
        count(&|x| x.flags.likely_mislabeled),
    )
    .i64("ambiguous", "training images of the class flagged ambiguous", count(&|x| x.flags.ambiguous))
    .i64("outliers", "training images of the class flagged outliers", count(&|x| x.flags.outlier))
    .i64("duplicates", "training images of the class in a duplicate pair", count(&|x| x.flags.duplicate))
    .finish()
}

/// `embeddings.parquet`: one row per image, its L2-normalised pooled features.
///
/// | column | type | meaning |
/// |---|---|---|
/// | id, split | string | the image |
/// | vector | array(float32, dim) | unit-length embedding (the final model's pooled features) |
pub fn embeddings(ds: &Dataset, train: &[f32], test: &[f32], dim: usize) -> RecordBatch {
    let ids = ds.train.ids.iter().chain(&ds.test.ids);
    let splits = std::iter::repeat_n("train", ds.train.len()).chain(std::iter::repeat_n("test", ds.test.len()));
    TableBuilder::new()
        .utf8("id", "image id", ids)
        .utf8("split", "train or test", splits)
        .f32_rows("vector", "unit-length embedding: the final model's pooled features", [train, test].concat(), dim)
        .finish()
}

/// `neighbors.parquet`: the k nearest training images of every image, one row per (image, rank).
///
/// | column | type | meaning |
/// |---|---|---|
/// | id | string | the image (train or test) |
/// | rank | int32 | 1 = nearest |
/// | neighbor_id | string | a training image (never the image itself) |
/// | distance | float32 | Euclidean distance between the unit embeddings (0 to 2) |
/// | neighbor_label, neighbor_label_name | int32, string | the neighbour's given label |
pub fn neighbors(
    ds: &Dataset,
    train_nb: &crate::scores::neighbors::Neighbors,
    test_nb: &crate::scores::neighbors::Neighbors,
) -> RecordBatch {
    let k = train_nb.k;
    let queries: Vec<&String> = ds.train.ids.iter().chain(&ds.test.ids).collect();
    let idx: Vec<u32> = train_nb.index.iter().chain(&test_nb.index).copied().collect();
    let dist: Vec<f32> = train_nb.distance.iter().chain(&test_nb.distance).copied().collect();
    TableBuilder::new()
        .utf8("id", "image id", (0..idx.len()).map(|r| queries[r / k].as_str()))
        .i32("rank", "1 = nearest", (0..idx.len()).map(|r| (r % k) as i32 + 1))
        .utf8(
            "neighbor_id",
            "id of the neighbouring training image",
            idx.iter().map(|&j| ds.train.ids[j as usize].as_str()),
        )
        .f32("distance", "distance between the unit embeddings (0 to 2)", dist)
        .i32("neighbor_label", "the neighbour's given label", idx.iter().map(|&j| ds.train.labels[j as usize] as i32))
        .utf8(
            "neighbor_label_name",
            "the neighbour's given label, as a name",
            idx.iter().map(|&j| ds.classes[ds.train.labels[j as usize] as usize].as_str()),
        )
        .finish()
}

/// `duplicates.parquet`: one row per duplicate pair.
///
/// | column | type | meaning |
/// |---|---|---|
/// | id_a, split_a | string | a training image |
/// | id_b, split_b | string | its duplicate, in train or test (a leak when test) |
/// | embedding_distance | float32 | distance between the unit embeddings |
/// | pixel_distance | float32 | mean absolute pixel difference, grey levels of 255 |
/// | kind | string | `exact` (identical pixels) or `near` |
/// | same_label | bool | whether both carry the same given label |
pub fn duplicates(ds: &Dataset, pairs: &[crate::scores::duplicates::Pair]) -> RecordBatch {
    let b_set = |p: &crate::scores::duplicates::Pair| if p.b_test { &ds.test } else { &ds.train };
    TableBuilder::new()
        .utf8("id_a", "training image", pairs.iter().map(|p| ds.train.ids[p.a].as_str()))
        .utf8("id_b", "its duplicate", pairs.iter().map(|p| b_set(p).ids[p.b].as_str()))
        .utf8("split_a", "split of id_a (train)", pairs.iter().map(|_| "train"))
        .utf8("split_b", "split of id_b", pairs.iter().map(|p| if p.b_test { "test" } else { "train" }))
        .f32("embedding_distance", "distance between the unit embeddings", pairs.iter().map(|p| p.embedding_distance))
        .f32("pixel_distance", "mean absolute pixel difference, grey levels", pairs.iter().map(|p| p.pixel_distance))
        .utf8("kind", "exact or near", pairs.iter().map(|p| if p.exact { "exact" } else { "near" }))
        .bool(
            "same_label",
            "whether both carry the same label",
            pairs.iter().map(|p| ds.train.labels[p.a] == b_set(p).labels[p.b]),
        )
        .finish()
}

/// The label-quality columns of `samples.parquet` (null where they do not apply):
///
/// | column | type | meaning |
/// |---|---|---|
/// | label_issue | bool | train: flagged by confident learning's filter |
/// | normalized_margin, confidence_weighted_entropy | float64 | train: cleanlab's ranking scores (low = suspicious) |
/// | neighbor_agreement | float64 | distance-weighted share of the k training neighbours with the image's label |
/// | neighbor_label, neighbor_label_name | int32, string | the neighbours' weighted majority label |
/// | kth_distance | float32 | distance to the k-th neighbour |
/// | outlier_percentile | float64 | share of same-class training images with a smaller k-th distance |
/// | issue_score | float64 | train: combined label-issue score, 1 - (model + neighbour vote for the label) / 2 |
/// | suggested_label, suggested_label_name, suggested_confidence | int32, string, float64 | train: the combined vote's class and share |
/// | likely_mislabeled, ambiguous, outlier, duplicate | bool | the flags |
/// | evidence | string | train: the evidence in words |
pub fn score_columns(b: TableBuilder, classes: &[String], s: &[crate::scores::ImageScores]) -> TableBuilder {
    let name = |l: Option<u32>| l.map(|l| classes[l as usize].as_str());
    b.opt_bool("label_issue", "flagged by confident learning (train only)", s.iter().map(|x| x.label_issue))
        .opt_f64(
            "normalized_margin",
            "cleanlab normalized margin (train only; low = suspicious)",
            s.iter().map(|x| x.normalized_margin),
        )
        .opt_f64(
            "confidence_weighted_entropy",
            "cleanlab confidence-weighted entropy (train only; low = suspicious)",
            s.iter().map(|x| x.confidence_weighted_entropy),
        )
        .opt_f64(
            "neighbor_agreement",
            "distance-weighted share of neighbours with the image's label",
            s.iter().map(|x| x.neighbor_agreement),
        )
        .opt_i32(
            "neighbor_label",
            "neighbours' weighted majority label",
            s.iter().map(|x| x.neighbor_label.map(|l| l as i32)),
        )
        .opt_utf8(
            "neighbor_label_name",
            "neighbours' weighted majority label, as a name",
            s.iter().map(|x| name(x.neighbor_label)),
        )
        .opt_f32("kth_distance", "distance to the k-th nearest training image", s.iter().map(|x| x.kth_distance))
        .opt_f64(
            "outlier_percentile",
            "share of same-class training images with a smaller k-th distance",
            s.iter().map(|x| x.outlier_percentile),
        )
        .opt_f64(
            "issue_score",
            "combined label-issue score (train only; high = suspicious)",
            s.iter().map(|x| x.issue_score),
        )
        .opt_i32(
            "suggested_label",
            "class the combined vote prefers (train only)",
            s.iter().map(|x| x.suggested_label.map(|l| l as i32)),
        )
        .opt_utf8(
            "suggested_label_name",
            "class the combined vote prefers, as a name",
            s.iter().map(|x| name(x.suggested_label)),
        )
        .opt_f64(
            "suggested_confidence",
            "share of the combined vote for the suggested label",
            s.iter().map(|x| x.suggested_confidence),
        )
        .bool("likely_mislabeled", "label likely wrong", s.iter().map(|x| x.flags.likely_mislabeled))
        .bool(
            "ambiguous",
            "model and neighbours split between two or more classes",
            s.iter().map(|x| x.flags.ambiguous),
        )
        .bool("outlier", "far from every training image of its class", s.iter().map(|x| x.flags.outlier))
        .bool("duplicate", "in a duplicate pair (see duplicates.parquet)", s.iter().map(|x| x.flags.duplicate))
        .opt_utf8("evidence", "the evidence in words (train only)", s.iter().map(|x| x.evidence.as_deref()))
}

/// `selfcheck.parquet`: every flag and score against known bad images.
///
/// | column | type | meaning |
/// |---|---|---|
/// | name | string | the flag or score |
/// | target | string | what is known bad: label_flip, duplicate, outlier |
/// | precision, recall, f1 | float64, null | flags only |
/// | flagged | int64, null | flags only: images flagged |
/// | auroc | float64, null | scores only |
/// | positives, images | int64 | known bad images, images checked |
pub fn selfcheck(checks: &[crate::scores::selfcheck::Check]) -> RecordBatch {
    TableBuilder::new()
        .utf8("name", "flag or score", checks.iter().map(|c| c.name.as_str()))
        .utf8("target", "what is known bad", checks.iter().map(|c| c.target.as_str()))
        .opt_f64("precision", "flags: share of flagged images that are bad", checks.iter().map(|c| c.precision))
        .opt_f64("recall", "flags: share of bad images flagged", checks.iter().map(|c| c.recall))
        .opt_f64("f1", "flags: harmonic mean of precision and recall", checks.iter().map(|c| c.f1))
        .opt_i64("flagged", "flags: images flagged", checks.iter().map(|c| c.flagged.map(|f| f as i64)))
        .opt_f64("auroc", "scores: area under the ROC curve", checks.iter().map(|c| c.auroc))
        .i64("positives", "known bad images", checks.iter().map(|c| c.positives as i64))
        .i64("images", "images checked", checks.iter().map(|c| c.images as i64))
        .finish()
}

/// One row per attacked image x attack x budget.
pub fn attacks(ds: &Dataset, res: &crate::attack::AttackResults, cfg: &crate::attack::AttackConfig) -> RecordBatch {
    use crate::data::Split;
    let v = |r: &crate::attack::AttackRow| &res.victims[r.victim];
    let set = |s: Split| if s == Split::Train { &ds.train } else { &ds.test };
    let spec = |r: &crate::attack::AttackRow| &cfg.attacks[r.attack];
    let rows = &res.rows;
    let name = |c: u32| ds.classes[c as usize].as_str();
    TableBuilder::new()
        .utf8("id", "attacked image", rows.iter().map(|r| set(v(r).split).ids[v(r).row].as_str()))
        .utf8("split", "train or test", rows.iter().map(|r| v(r).split.as_str()))
        .i32("label", "given label", rows.iter().map(|r| v(r).label as i32))
        .utf8("label_name", "given label's name", rows.iter().map(|r| name(v(r).label)))
        .utf8("attack", "METHOD:NORM[:TARGET], e.g. pgd:linf:least-likely", rows.iter().map(|r| spec(r).name()))
        .utf8(
            "method",
            "fgsm or pgd",
            rows.iter().map(|r| if spec(r).method == crate::attack::Method::Fgsm { "fgsm" } else { "pgd" }),
        )
        .utf8("norm", "linf or l2", rows.iter().map(|r| spec(r).norm.as_str()))
        .bool("targeted", "whether success means reaching a target class", rows.iter().map(|r| r.target.is_some()))
        .opt_i32("target", "target class (null: untargeted)", rows.iter().map(|r| r.target.map(|t| t as i32)))
        .opt_utf8("target_name", "target class name", rows.iter().map(|r| r.target.map(name)))
        .f32(
            "budget",
            "budget in the attack's norm, [0, 1] pixel units (8/255 = 0.0314)",
            rows.iter().map(|r| r.budget),
        )
        .bool(
            "success",
            "untargeted: prediction left the label; targeted: prediction is the target",
            rows.iter().map(|r| r.success),
        )
        .i32("adv_pred", "prediction on the adversarial image", rows.iter().map(|r| r.adv_pred as i32))
        .utf8("adv_pred_name", "its class name", rows.iter().map(|r| name(r.adv_pred)))
        .f32("adv_prob", "softmax probability of adv_pred", rows.iter().map(|r| r.adv_prob))
        .f32("linf", "L-inf norm of the perturbation used, [0, 1] pixel units", rows.iter().map(|r| r.linf))
        .f32("l2", "L2 norm of the perturbation used, [0, 1] pixel units", rows.iter().map(|r| r.l2))
        .i32(
            "steps",
            "gradient steps taken before success (all, over every restart, on failure)",
            rows.iter().map(|r| r.steps as i32),
        )
        .finish()
}

/// One row per class x attack x budget: success among the class's test victims.
pub fn attack_classes(classes: &[String], per_class: &[crate::attack::ClassSuccess]) -> RecordBatch {
    TableBuilder::new()
        .i32("class", "class index", per_class.iter().map(|c| c.class as i32))
        .utf8("class_name", "class name", per_class.iter().map(|c| classes[c.class as usize].as_str()))
        .utf8("attack", "METHOD:NORM[:TARGET]", per_class.iter().map(|c| c.attack.as_str()))
        .f32("budget", "budget in the attack's norm, [0, 1] pixel units", per_class.iter().map(|c| c.budget))
        .i64("attacked", "test images of the class attacked", per_class.iter().map(|c| c.attacked as i64))
        .i64("successes", "of those, flipped", per_class.iter().map(|c| c.successes as i64))
        .f64("success_rate", "successes over attacked", per_class.iter().map(|c| c.rate))
        .f64("success_rate_low", "95% Wilson interval, low end", per_class.iter().map(|c| c.low))
        .f64("success_rate_high", "95% Wilson interval, high end", per_class.iter().map(|c| c.high))
        .finish()
}
