//! Parquet shards: item embeddings in, SIDs in and out.
//!
//! A shard set is one `.parquet` file or a folder of them (Spark's and
//! pyarrow's `part-*.parquet`; names starting with `_` or `.` — `_SUCCESS`,
//! checksums — are skipped), read in name order and streamed in record
//! batches, never whole. Errors name the file, the column and the row
//! (0-based within its file).

mod embeddings;
mod sids;

pub use embeddings::{EmbeddingBatch, EmbeddingColumns, EmbeddingsRead, read_embeddings};
pub use sids::{CODES_COLUMN, HEADER_KEY, ID_COLUMN, SidColumns, read_sids, write_sids};

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

/// Rows per record batch read or written.
pub const BATCH_ROWS: usize = 65_536;

/// Errors of reading and writing Parquet shards.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// Bad content: a missing column, a wrong type, a null, NaN, a ragged list…
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    /// The file is not readable Parquet (or a codec this build lacks).
    #[error("{path}: not readable as Parquet: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error(transparent)]
    Io(#[from] crate::fsx::FsError),
}

impl ShardError {
    pub(crate) fn input(path: &Path, msg: impl Into<String>) -> Self {
        Self::Input {
            path: path.to_owned(),
            msg: msg.into(),
        }
    }

    fn format(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Format {
            path: path.to_owned(),
            msg: e.to_string(),
        }
    }
}

/// Whether `path` names Parquet input: a `.parquet` file or a directory.
pub fn is_parquet(path: &Path) -> bool {
    path.is_dir() || path.extension().is_some_and(|e| e == "parquet")
}

/// The shard files of `path`, in name order.
pub fn shard_files(path: &Path) -> Result<Vec<PathBuf>, ShardError> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(ShardError::input(path, "no such file or directory"));
        }
        return Ok(vec![path.to_owned()]);
    }
    let read = std::fs::read_dir(path)
        .map_err(|e| crate::fsx::FsError::new(path, "list the directory", e))?;
    let mut files = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| crate::fsx::FsError::new(path, "list the directory", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('_') || name.starts_with('.') || !name.ends_with(".parquet") {
            continue;
        }
        files.push(entry.path());
    }
    files.sort();
    if files.is_empty() {
        return Err(ShardError::input(path, "holds no .parquet files"));
    }
    Ok(files)
}

/// An opened shard: its Arrow schema, key-value metadata and row count,
/// ready to stream the chosen top-level columns.
pub(crate) struct Shard {
    pub path: PathBuf,
    builder: ParquetRecordBatchReaderBuilder<File>,
}

impl Shard {
    pub fn open(path: &Path) -> Result<Self, ShardError> {
        let file = File::open(path).map_err(|e| crate::fsx::FsError::new(path, "open", e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| ShardError::format(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            builder,
        })
    }

    pub fn schema(&self) -> &arrow_schema::Schema {
        self.builder.schema()
    }

    /// The value of a key in the file's key-value metadata.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.builder
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_deref()
    }

    /// Streams the named top-level columns (by index in [`Self::schema`]).
    pub fn stream(self, columns: &[usize]) -> Result<Batches, ShardError> {
        let mask = ProjectionMask::roots(self.builder.parquet_schema(), columns.iter().copied());
        let reader = self
            .builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| ShardError::format(&self.path, e))?;
        Ok(Batches {
            path: self.path,
            reader,
        })
    }
}

/// Record batches of one shard; a decoding failure names the file.
pub(crate) struct Batches {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
}

impl Iterator for Batches {
    type Item = Result<arrow_array::RecordBatch, ShardError>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(
            self.reader
                .next()?
                .map_err(|e| ShardError::format(&self.path, e)),
        )
    }
}

/// Index of a top-level column: `wanted` if given (it must exist), else the
/// first of `defaults` present.
pub(crate) fn find_column(
    shard: &Shard,
    wanted: Option<&str>,
    defaults: &[&str],
) -> Result<Option<usize>, ShardError> {
    let schema = shard.schema();
    if let Some(name) = wanted {
        return schema.index_of(name).map(Some).map_err(|_| {
            ShardError::input(
                &shard.path,
                format!("no column {name:?} (columns: {})", column_names(schema)),
            )
        });
    }
    Ok(defaults.iter().find_map(|d| schema.index_of(d).ok()))
}

pub(crate) fn column_names(schema: &arrow_schema::Schema) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names.join(", ")
}

/// Reads an id column's row `row` as text: strings, or integers written in decimal.
pub(crate) struct IdColumn<'a>(IdValues<'a>);

enum IdValues<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Int64(Vec<Option<i64>>),
}

impl<'a> IdColumn<'a> {
    /// The ids of `array`, or why the column cannot hold ids.
    pub fn new(array: &'a dyn arrow_array::Array) -> Result<Self, String> {
        use arrow_array::cast::AsArray;
        use arrow_schema::DataType as T;
        let ints = |v: Vec<Option<i64>>| Ok(Self(IdValues::Int64(v)));
        match array.data_type() {
            T::Utf8 => Ok(Self(IdValues::Utf8(array.as_string::<i32>()))),
            T::LargeUtf8 => Ok(Self(IdValues::LargeUtf8(array.as_string::<i64>()))),
            T::Utf8View => Ok(Self(IdValues::View(array.as_string_view()))),
            T::Int8
            | T::Int16
            | T::Int32
            | T::Int64
            | T::UInt8
            | T::UInt16
            | T::UInt32
            | T::UInt64 => ints(int_values(array)?),
            other => Err(format!(
                "has type {other}; item ids must be strings or integers"
            )),
        }
    }

    /// Row `i`'s id; `None` for a null.
    pub fn get(&self, i: usize) -> Option<String> {
        use arrow_array::Array;
        match &self.0 {
            IdValues::Utf8(a) => (!a.is_null(i)).then(|| a.value(i).to_owned()),
            IdValues::LargeUtf8(a) => (!a.is_null(i)).then(|| a.value(i).to_owned()),
            IdValues::View(a) => (!a.is_null(i)).then(|| a.value(i).to_owned()),
            IdValues::Int64(v) => v[i].map(|n| n.to_string()),
        }
    }
}

/// Checks an item id as the SID file does: non-empty, no tabs or newlines,
/// no surrounding spaces.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.trim() != id || id.contains(['\t', '\n', '\r']) {
        return Err(format!(
            "item id {id:?} is empty or has tabs, newlines or surrounding spaces"
        ));
    }
    Ok(())
}

/// First occurrence of every item id across shards, to refuse duplicates.
#[derive(Default)]
pub(crate) struct SeenIds {
    first: std::collections::HashMap<String, (u32, u64)>,
    files: Vec<PathBuf>,
}

impl SeenIds {
    /// Registers shard `path`; later ids are attributed to it.
    pub fn next_file(&mut self, path: &Path) {
        self.files.push(path.to_owned());
    }

    /// Records `id` at `row` of the current file, refusing one seen before.
    pub fn insert(&mut self, id: &str, row: u64, column: &str) -> Result<(), ShardError> {
        let file = self.files.len() as u32 - 1;
        if let Some(&(f, r)) = self.first.get(id) {
            return Err(ShardError::input(
                &self.files[file as usize],
                format!(
                    "column {column:?}, 0-based row {row}: duplicate item id {id:?} (first in {} at row {r})",
                    self.files[f as usize].display()
                ),
            ));
        }
        self.first.insert(id.to_owned(), (file, row));
        Ok(())
    }
}

/// The values of an integer column as `i64` (nulls as `None`), or why not.
pub(crate) fn int_values(array: &dyn arrow_array::Array) -> Result<Vec<Option<i64>>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::DataType as T;
    fn widen<P: ArrowPrimitiveType>(a: &arrow_array::PrimitiveArray<P>) -> Vec<Option<i64>>
    where
        P::Native: Into<i64>,
    {
        a.iter().map(|v| v.map(Into::into)).collect()
    }
    Ok(match array.data_type() {
        T::Int8 => widen(array.as_primitive::<Int8Type>()),
        T::Int16 => widen(array.as_primitive::<Int16Type>()),
        T::Int32 => widen(array.as_primitive::<Int32Type>()),
        T::Int64 => widen(array.as_primitive::<Int64Type>()),
        T::UInt8 => widen(array.as_primitive::<UInt8Type>()),
        T::UInt16 => widen(array.as_primitive::<UInt16Type>()),
        T::UInt32 => widen(array.as_primitive::<UInt32Type>()),
        T::UInt64 => {
            let col = array.as_primitive::<UInt64Type>();
            let mut out = Vec::with_capacity(col.len());
            for (i, v) in col.iter().enumerate() {
                out.push(match v {
                    Some(v) => Some(
                        i64::try_from(v).map_err(|_| format!("batch row {i}: {v} exceeds i64"))?,
                    ),
                    None => None,
                });
            }
            out
        }
        other => return Err(format!("has type {other}, not an integer type")),
    })
}

/// The child values of a list column and each row's `start..end` in them,
/// for `list`, `large_list` and `fixed_size_list`; `None` for other types.
pub(crate) fn list_rows(
    col: &dyn arrow_array::Array,
) -> Option<(&arrow_array::ArrayRef, Vec<(usize, usize)>)> {
    use arrow_array::cast::AsArray;
    use arrow_array::{GenericListArray, OffsetSizeTrait};
    use arrow_schema::DataType as T;
    fn ranges<O: OffsetSizeTrait>(a: &GenericListArray<O>) -> Vec<(usize, usize)> {
        a.value_offsets()
            .windows(2)
            .map(|w| (w[0].as_usize(), w[1].as_usize()))
            .collect()
    }
    match col.data_type() {
        T::List(_) => {
            let a = col.as_list::<i32>();
            Some((a.values(), ranges(a)))
        }
        T::LargeList(_) => {
            let a = col.as_list::<i64>();
            Some((a.values(), ranges(a)))
        }
        T::FixedSizeList(_, len) => {
            let a = col.as_fixed_size_list();
            let len = *len as usize;
            let rows = (0..arrow_array::Array::len(a))
                .map(|i| (a.value_offset_at(i), a.value_offset_at(i) + len))
                .collect();
            Some((a.values(), rows))
        }
        _ => None,
    }
}
