//! Tables as Arrow RecordBatches, built column by column against the run
//! folder's contract ([`crate::run::schema`]), and written as
//! zstd-compressed Parquet with each column's description in its field
//! metadata and the run's key-value metadata (misfit version, configuration,
//! dataset fingerprint), under a temporary name renamed into place when
//! complete. Every per-image table is keyed by image `id`, so tables join on it.

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

use crate::error::{Error, Result};
use crate::run::schema::{Group, Named, TableSchema};

/// Key-value metadata key for the misfit version that wrote a table.
pub const META_VERSION: &str = "misfit.version";
/// Key for the run configuration (JSON).
pub const META_CONFIG: &str = "misfit.config";
/// Key for the dataset fingerprint (see [`crate::data::Dataset::fingerprint`]).
pub const META_FINGERPRINT: &str = "misfit.dataset_fingerprint";
/// Field metadata key holding a column's description.
pub const FIELD_DESCRIPTION: &str = "description";

/// What every table of a run carries in its metadata.
#[derive(Clone, Debug)]
pub struct TableMeta {
    /// The run configuration, as JSON.
    pub config_json: String,
    /// The dataset fingerprint (empty for a `misfit score` run, which has no images).
    pub dataset_fingerprint: String,
}

/// Writes one batch as a Parquet table at `path`, atomically.
pub fn write(path: &Path, batch: &RecordBatch, meta: &TableMeta) -> Result<()> {
    let bytes = to_bytes(batch, meta).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    crate::atomic::write(path, &bytes)
}

/// One batch as the bytes of a Parquet file, as [`write`] writes it.
pub fn to_bytes(batch: &RecordBatch, meta: &TableMeta) -> std::result::Result<Vec<u8>, parquet::errors::ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
        .set_created_by(format!("misfit {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(META_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
            KeyValue::new(META_CONFIG.to_string(), meta.config_json.clone()),
            KeyValue::new(META_FINGERPRINT.to_string(), meta.dataset_fingerprint.clone()),
        ]))
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(bytes)
}

/// `batch` with `extra` columns after its own (columns outside the
/// contract's groups, such as a finding's evidence, each with its own
/// description in its field).
pub fn with_columns(batch: RecordBatch, extra: Vec<(Field, ArrayRef)>) -> RecordBatch {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays = batch.columns().to_vec();
    for (f, a) in extra {
        fields.push(f);
        arrays.push(a);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("columns of equal length")
}

/// The columns of one [`Group`] (or one set of [`Named`] columns), built:
/// fields (with descriptions) and arrays.
#[derive(Debug)]
pub struct Columns {
    owner: Owner,
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

/// Whose columns they are: a group's, or a set of run-time-named columns.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Group(&'static Group),
    Named(&'static Named),
}

impl Columns {
    /// Run-time-named columns of `named`: each name starts with its prefix
    /// (a programming error otherwise); nullable.
    pub fn named(named: &'static Named, columns: Vec<(String, ArrayRef)>) -> Columns {
        let (mut fields, mut arrays) = (Vec::new(), Vec::new());
        for (name, array) in columns {
            assert!(name.starts_with(named.prefix), "column '{name}' does not start with '{}'", named.prefix);
            fields.push(
                Field::new(name, array.data_type().clone(), true)
                    .with_metadata(HashMap::from([(FIELD_DESCRIPTION.to_string(), named.description.to_string())])),
            );
            arrays.push(array);
        }
        Columns { owner: Owner::Named(named), fields, arrays }
    }

    /// Run-time-named float columns of `named`.
    pub fn named_f64(named: &'static Named, columns: Vec<(String, Vec<Option<f64>>)>) -> Columns {
        let arrays = columns.into_iter().map(|(n, v)| (n, Arc::new(Float64Array::from(v)) as ArrayRef)).collect();
        Columns::named(named, arrays)
    }
}

/// Builds the columns of one [`Group`] in its order; each column's
/// description comes from the contract, so a name not in the group is a
/// programming error caught by the first test that builds it.
pub struct TableBuilder {
    group: &'static Group,
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl TableBuilder {
    /// Starts the columns of `group`.
    pub fn new(group: &'static Group) -> Self {
        TableBuilder { group, fields: Vec::new(), arrays: Vec::new() }
    }

    fn push(mut self, name: &str, nullable: bool, array: ArrayRef) -> Self {
        let next = self.group.columns.get(self.fields.len());
        let column = match next {
            Some(c) if c.name == name => c,
            _ => panic!(
                "column '{name}' is not the next column of the {} group ({}) in src/run/schema.rs",
                self.group.stage,
                self.group.names().collect::<Vec<_>>().join(", ")
            ),
        };
        let field = Field::new(name, array.data_type().clone(), nullable)
            .with_metadata(HashMap::from([(FIELD_DESCRIPTION.to_string(), column.description.to_string())]));
        self.fields.push(field);
        self.arrays.push(array);
        self
    }

    /// A text column.
    pub fn utf8<S: AsRef<str>>(self, name: &str, values: impl IntoIterator<Item = S>) -> Self {
        self.push(name, false, Arc::new(StringArray::from_iter_values(values)))
    }

    /// A text column with nulls.
    pub fn opt_utf8<S: AsRef<str>>(self, name: &str, values: impl IntoIterator<Item = Option<S>>) -> Self {
        self.push(name, true, Arc::new(StringArray::from_iter(values)))
    }

    /// A 32-bit integer column.
    pub fn i32(self, name: &str, values: impl IntoIterator<Item = i32>) -> Self {
        self.push(name, false, Arc::new(Int32Array::from_iter_values(values)))
    }

    /// A 32-bit integer column with nulls.
    pub fn opt_i32(self, name: &str, values: impl IntoIterator<Item = Option<i32>>) -> Self {
        self.push(name, true, Arc::new(Int32Array::from_iter(values)))
    }

    /// A 64-bit integer column.
    pub fn i64(self, name: &str, values: impl IntoIterator<Item = i64>) -> Self {
        self.push(name, false, Arc::new(Int64Array::from_iter_values(values)))
    }

    /// A 64-bit integer column with nulls.
    pub fn opt_i64(self, name: &str, values: impl IntoIterator<Item = Option<i64>>) -> Self {
        self.push(name, true, Arc::new(Int64Array::from_iter(values)))
    }

    /// A 32-bit float column.
    pub fn f32(self, name: &str, values: impl IntoIterator<Item = f32>) -> Self {
        self.push(name, false, Arc::new(Float32Array::from_iter_values(values)))
    }

    /// A 32-bit float column with nulls.
    pub fn opt_f32(self, name: &str, values: impl IntoIterator<Item = Option<f32>>) -> Self {
        self.push(name, true, Arc::new(Float32Array::from_iter(values)))
    }

    /// A 64-bit float column.
    pub fn f64(self, name: &str, values: impl IntoIterator<Item = f64>) -> Self {
        self.push(name, false, Arc::new(Float64Array::from_iter_values(values)))
    }

    /// A 64-bit float column with nulls.
    pub fn opt_f64(self, name: &str, values: impl IntoIterator<Item = Option<f64>>) -> Self {
        self.push(name, true, Arc::new(Float64Array::from_iter(values)))
    }

    /// A boolean column.
    pub fn bool(self, name: &str, values: impl IntoIterator<Item = bool>) -> Self {
        self.push(name, false, Arc::new(BooleanArray::from_iter(values.into_iter().map(Some))))
    }

    /// A boolean column with nulls.
    pub fn opt_bool(self, name: &str, values: impl IntoIterator<Item = Option<bool>>) -> Self {
        self.push(name, true, Arc::new(BooleanArray::from_iter(values)))
    }

    /// A fixed-size list of f32 per row (`width` values each), from
    /// row-major `values`; Polars reads it as `Array(Float32, width)`.
    pub fn f32_rows(self, name: &str, values: Vec<f32>, width: usize) -> Self {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let array = FixedSizeListArray::try_new(item, width as i32, Arc::new(Float32Array::from(values)), None)
            .expect("values are whole rows");
        self.push(name, false, Arc::new(array))
    }

    /// The group's columns, every one of them built.
    pub fn finish(self) -> Columns {
        assert_eq!(
            self.fields.len(),
            self.group.columns.len(),
            "the {} group has columns {:?}; {} were built",
            self.group.stage,
            self.group.names().collect::<Vec<_>>(),
            self.fields.len()
        );
        Columns { owner: Owner::Group(self.group), fields: self.fields, arrays: self.arrays }
    }

    /// The finished columns as a whole table of one group.
    pub fn finish_table(self, table: &'static TableSchema) -> RecordBatch {
        assemble(table, vec![self.finish()])
    }
}

/// A table from the column groups the stages built, in the contract's group
/// order, then its run-time-named columns (groups a run did not produce are
/// left out; a group that is not the table's, or rows that differ, is a
/// programming error). Groups are `static`s, so a group is known by its address.
pub fn assemble(table: &'static TableSchema, mut parts: Vec<Columns>) -> RecordBatch {
    let order =
        |c: &Columns| match c.owner {
            Owner::Group(group) => table.groups.iter().position(|g| std::ptr::eq(*g, group)).unwrap_or_else(|| {
                panic!("the {} group is not part of {} in src/run/schema.rs", group.stage, table.file)
            }),
            Owner::Named(named) => {
                table.groups.len()
                    + table.named.iter().position(|n| std::ptr::eq(*n, named)).unwrap_or_else(|| {
                        panic!("the {} columns {} are not part of {}", named.stage, named.pattern, table.file)
                    })
            }
        };
    parts.sort_by_key(order);
    let (mut fields, mut arrays) = (Vec::new(), Vec::new());
    for p in parts {
        fields.extend(p.fields);
        arrays.extend(p.arrays);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("columns of equal length")
}
