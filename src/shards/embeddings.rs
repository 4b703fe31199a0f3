//! Item embeddings from Parquet: a `fixed_size_list<float32>` or
//! `list<float32>` column (float64 is converted) and an optional id column
//! (strings or integers; without one, items are numbered by row across the
//! shards), streamed to a callback batch by batch.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use super::{
    IdColumn, SeenIds, Shard, ShardError, check_id, column_names, find_column, shard_files,
};

/// Which columns hold the embeddings and the item ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmbeddingColumns {
    /// Embedding column [default: `embedding`, else the only list column].
    pub embedding: Option<String>,
    /// Item id column [default: `id` or `item_id` if present, else row numbers].
    pub id: Option<String>,
}

/// One record batch of embeddings, row-major `[rows, dim]`.
pub struct EmbeddingBatch<'a> {
    pub ids: Vec<String>,
    pub x: &'a [f32],
    pub dim: usize,
}

/// What a full read saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddingsRead {
    pub rows: usize,
    pub dim: usize,
    /// Whether the ids came from a column (else they are row numbers).
    pub has_ids: bool,
}

/// Streams every shard of `path` through `each`, in shard and row order,
/// checking as it goes: one dimension throughout, no nulls, no NaN or
/// infinity, ids non-empty and unique across shards. A reader thread
/// decodes the next batch while `each` works on this one.
pub fn read_embeddings<E: From<ShardError>>(
    path: &Path,
    columns: &EmbeddingColumns,
    mut each: impl FnMut(EmbeddingBatch<'_>) -> Result<(), E>,
) -> Result<EmbeddingsRead, E> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<String>, Vec<f32>, usize)>(1);
        let reader = std::thread::Builder::new()
            .name("sidx-parquet-reader".into())
            .spawn_scoped(scope, move || {
                decode(path, columns, |ids, x, dim| tx.send((ids, x, dim)).is_ok())
            })
            .map_err(|e| ShardError::input(path, format!("cannot start the reader thread: {e}")))?;
        let mut failed = None;
        for (ids, x, dim) in &rx {
            if let Err(e) = each(EmbeddingBatch { ids, x: &x, dim }) {
                failed = Some(e);
                break;
            }
        }
        drop(rx); // a reader still sending stops at its next batch
        let read = reader
            .join()
            .expect("the Parquet reader thread does not panic");
        match failed {
            Some(e) => Err(e),
            None => read.map_err(E::from),
        }
    })
}

/// Decodes and checks every batch, handing each to `send` (`false`: stop).
fn decode(
    path: &Path,
    columns: &EmbeddingColumns,
    mut send: impl FnMut(Vec<String>, Vec<f32>, usize) -> bool,
) -> Result<EmbeddingsRead, ShardError> {
    let mut seen = SeenIds::default();
    let mut dim: Option<usize> = None;
    let mut has_ids: Option<bool> = None;
    let mut rows = 0usize;
    for file in shard_files(path)? {
        let shard = Shard::open(&file)?;
        let (emb, emb_name) = embedding_column(&shard, columns.embedding.as_deref())?;
        let id = find_column(&shard, columns.id.as_deref(), &["id", "item_id"])?;
        match has_ids {
            Some(h) if h != id.is_some() => {
                return Err(ShardError::input(
                    &file,
                    "has no id column while other shards do (or the other way round)",
                ));
            }
            _ => has_ids = Some(id.is_some()),
        }
        let id_name = id.map(|i| shard.schema().field(i).name().clone());
        seen.next_file(&file);
        let projection: Vec<usize> = std::iter::once(emb).chain(id).collect();
        let mut row_in_file = 0u64;
        for batch in shard.stream(&projection)? {
            let batch = batch?;
            let bad = |msg: String| ShardError::input(&file, msg);
            let values = batch_column(&batch, &emb_name);
            let mut x = Vec::new();
            let d = flatten(values.as_ref(), dim, &mut x).map_err(|(row, msg)| {
                bad(format!(
                    "column {emb_name:?}, 0-based row {}: {msg}",
                    row_in_file + row as u64
                ))
            })?;
            let n = batch.num_rows();
            if n == 0 {
                continue;
            }
            dim = Some(d);
            let ids = match &id_name {
                Some(name) => {
                    let col = batch_column(&batch, name);
                    let col = IdColumn::new(col.as_ref())
                        .map_err(|m| bad(format!("column {name:?} {m}")))?;
                    let mut ids = Vec::with_capacity(n);
                    for r in 0..n {
                        let row = row_in_file + r as u64;
                        let id = col.get(r).ok_or_else(|| {
                            bad(format!("column {name:?}, 0-based row {row}: null item id"))
                        })?;
                        check_id(&id)
                            .map_err(|m| bad(format!("column {name:?}, 0-based row {row}: {m}")))?;
                        seen.insert(&id, row, name)?;
                        ids.push(id);
                    }
                    ids
                }
                None => (rows..rows + n).map(|i| i.to_string()).collect(),
            };
            if !send(ids, x, d) {
                return Ok(EmbeddingsRead {
                    rows,
                    dim: d,
                    has_ids: id_name.is_some(),
                });
            }
            rows += n;
            row_in_file += n as u64;
        }
    }
    match dim {
        Some(dim) if rows > 0 && dim > 0 => Ok(EmbeddingsRead {
            rows,
            dim,
            has_ids: has_ids == Some(true),
        }),
        _ => Err(ShardError::input(
            path,
            format!("no embeddings (rows {rows}, dimension 0)"),
        )),
    }
}

/// The column called `name` of a batch projected to include it.
fn batch_column(batch: &RecordBatch, name: &str) -> ArrayRef {
    batch
        .column_by_name(name)
        .expect("projected column present")
        .clone()
}

/// The embedding column: the named one, else `embedding`, else the only list column.
fn embedding_column(shard: &Shard, wanted: Option<&str>) -> Result<(usize, String), ShardError> {
    let schema = shard.schema();
    let index = match find_column(shard, wanted, &["embedding"])? {
        Some(i) => i,
        None => {
            let lists: Vec<usize> = (0..schema.fields().len())
                .filter(|&i| {
                    matches!(
                        schema.field(i).data_type(),
                        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
                    )
                })
                .collect();
            match lists[..] {
                [i] => i,
                _ => {
                    return Err(ShardError::input(
                        &shard.path,
                        format!(
                            "no column \"embedding\" and {} list columns to choose from \
                             (columns: {}); name one with --embedding-column",
                            lists.len(),
                            column_names(schema)
                        ),
                    ));
                }
            }
        }
    };
    let field = schema.field(index);
    let item = match field.data_type() {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Some(f.data_type())
        }
        _ => None,
    };
    if !matches!(item, Some(DataType::Float32 | DataType::Float64)) {
        return Err(ShardError::input(
            &shard.path,
            format!(
                "column {:?} has type {}; embeddings must be a list or \
                 fixed_size_list of float32 (or float64)",
                field.name(),
                field.data_type()
            ),
        ));
    }
    Ok((index, field.name().clone()))
}

/// Copies a list column into `out` (cleared) as row-major f32; returns the
/// dimension. Every row must hold `dim` finite values (`None`: the first
/// row sets it). Errors give the batch row and the problem.
fn flatten(
    col: &dyn Array,
    dim: Option<usize>,
    out: &mut Vec<f32>,
) -> Result<usize, (usize, String)> {
    out.clear();
    let rows = col.len();
    let Some((values, offsets)) = super::list_rows(col) else {
        return Err((0, format!("type {} is not a list", col.data_type())));
    };
    let mut dim = dim;
    out.reserve(rows * dim.unwrap_or(0));
    for (row, &(start, end)) in offsets.iter().enumerate() {
        if col.is_null(row) {
            return Err((row, "null embedding".into()));
        }
        let len = end - start;
        match dim {
            None => dim = Some(len),
            Some(d) if d != len => {
                return Err((
                    row,
                    format!("{len} values, other rows have {d} (ragged lists)"),
                ));
            }
            _ => {}
        }
        if values.null_count() > 0 && (start..end).any(|j| values.is_null(j)) {
            return Err((row, "a null value inside the embedding".into()));
        }
        let at = out.len();
        match values.data_type() {
            DataType::Float32 => {
                out.extend_from_slice(&values.as_primitive::<Float32Type>().values()[start..end]);
            }
            _ => out.extend(
                values.as_primitive::<Float64Type>().values()[start..end]
                    .iter()
                    .map(|&v| v as f32),
            ),
        }
        if let Some(v) = out[at..].iter().find(|v| !v.is_finite()) {
            return Err((row, format!("holds {v}; clean the embeddings first")));
        }
    }
    Ok(dim.unwrap_or(0))
}
