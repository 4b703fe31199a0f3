//! SIDs as Parquet: an `id` column (string; integers are read too) and the
//! SID as `codes: list<int32>` — element `j` is the code of layer `j + 1`,
//! null where the SID skips that layer (a variable-length SID), the element
//! after the last quantizer layer a disambiguation code — or as one integer
//! column per layer, `layer_1 … layer_K` (nullable the same way).
//!
//! sidx writes the SID file's header (layout, collisions, mitigation) as
//! the file's `sidx.header` key-value metadata. Shards without it — codes
//! written by Spark, Ray or pandas — take the layout from the caller and
//! have their collisions resolved here, in item id order, so the result
//! does not depend on how the rows were split into shards.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{
    BATCH_ROWS, IdColumn, SeenIds, Shard, ShardError, check_id, column_names, find_column,
    int_values, shard_files,
};
use crate::sid::{CollisionMode, Layout, SidHeader, SidTable, Token, resolve_collisions};

/// Key-value metadata key holding the SID header's JSON.
pub const HEADER_KEY: &str = "sidx.header";
pub const ID_COLUMN: &str = "id";
pub const CODES_COLUMN: &str = "codes";

/// How to read SID shards that carry no `sidx.header`.
#[derive(Clone, Debug)]
pub struct SidColumns {
    /// Layout of headerless shards (from the codebooks or `--layout`).
    pub layout: Option<Layout>,
    /// Collision handling of headerless shards.
    pub collisions: CollisionMode,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(ID_COLUMN, DataType::Utf8, false),
        Field::new(
            CODES_COLUMN,
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            false,
        ),
    ]))
}

/// Writes a table as one Parquet file (Snappy), its header in the metadata.
pub fn write_sids(table: &SidTable, w: &mut dyn Write) -> io::Result<()> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let schema = schema();
    // ArrowWriter needs a `Send` sink; the file is assembled in memory (a
    // SID file is small beside the embeddings that made it).
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(io::Error::other)?;
    let header = serde_json::to_string(table.header()).expect("header serializes");
    writer.append_key_value_metadata(KeyValue::new(HEADER_KEY.to_owned(), header));
    let items: Vec<(&str, &[Token])> = table.iter().collect();
    for chunk in items.chunks(BATCH_ROWS) {
        let mut ids = StringBuilder::new();
        let mut codes = ListBuilder::new(Int32Builder::new());
        for &(id, sid) in chunk {
            ids.append_value(id);
            let mut layer = 1u8;
            for t in sid {
                while layer < t.layer {
                    codes.values().append_null();
                    layer += 1;
                }
                codes.values().append_value(t.code as i32);
                layer += 1;
            }
            codes.append(true);
        }
        let columns: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(codes.finish())];
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(io::Error::other)?;
        writer.write(&batch).map_err(io::Error::other)?;
    }
    let bytes = writer.into_inner().map_err(io::Error::other)?;
    w.write_all(&bytes)
}

/// Where a shard keeps its codes.
enum CodeColumns {
    List(String),
    Layers(Vec<String>),
}

/// Reads SID shards (a file or a folder) into one table. With `sidx.header`
/// metadata (all shards alike) the SIDs are taken as they are; without it,
/// `columns.layout` is the layout and collisions are resolved in id order.
pub fn read_sids(path: &Path, columns: &SidColumns) -> Result<SidTable, ShardError> {
    let files = shard_files(path)?;
    let mut header: Option<Option<SidHeader>> = None;
    let mut seen = SeenIds::default();
    let mut rows: Vec<(String, Vec<Token>)> = Vec::new();
    for file in &files {
        let shard = Shard::open(file)?;
        let own =
            match shard.metadata(HEADER_KEY) {
                Some(json) => Some(SidHeader::from_json(json).map_err(|m| {
                    ShardError::input(file, format!("metadata {HEADER_KEY:?}: {m}"))
                })?),
                None => None,
            };
        match &header {
            Some(h) if *h != own => {
                return Err(ShardError::input(
                    file,
                    format!(
                        "its {HEADER_KEY:?} metadata differs from {}'s: \
                         the shards are not one SID set",
                        files[0].display()
                    ),
                ));
            }
            _ => header = Some(own.clone()),
        }
        let layout = match (&own, &columns.layout) {
            (Some(h), _) => h.layout(),
            (None, Some(l)) => l.clone(),
            (None, None) => {
                return Err(ShardError::input(
                    file,
                    format!(
                        "no {HEADER_KEY:?} metadata (not written by sidx): give the \
                         layout (--layout 256,256,256 or --codebooks)"
                    ),
                ));
            }
        };
        let id = find_column(&shard, None, &[ID_COLUMN, "item_id"])?.ok_or_else(|| {
            ShardError::input(
                file,
                format!(
                    "no id column (\"id\" or \"item_id\"; columns: {})",
                    column_names(shard.schema())
                ),
            )
        })?;
        let id_name = shard.schema().field(id).name().clone();
        let (codes, projection) = code_columns(&shard, id)?;
        seen.next_file(file);
        let mut row_in_file = 0u64;
        for batch in shard.stream(&projection)? {
            let batch = batch?;
            let bad = |msg: String| ShardError::input(file, msg);
            let n = batch.num_rows();
            let ids_col = batch.column_by_name(&id_name).expect("projected");
            let ids = IdColumn::new(ids_col.as_ref())
                .map_err(|m| bad(format!("column {id_name:?} {m}")))?;
            let sids =
                batch_sids(&batch, &codes, &layout, own.is_some()).map_err(|(r, col, m)| {
                    bad(format!(
                        "column {col:?}, 0-based row {}: {m}",
                        row_in_file + r as u64
                    ))
                })?;
            for (r, sid) in sids.into_iter().enumerate() {
                let row = row_in_file + r as u64;
                let id = ids.get(r).ok_or_else(|| {
                    bad(format!(
                        "column {id_name:?}, 0-based row {row}: null item id"
                    ))
                })?;
                check_id(&id)
                    .map_err(|m| bad(format!("column {id_name:?}, 0-based row {row}: {m}")))?;
                seen.insert(&id, row, &id_name)?;
                rows.push((id, sid));
            }
            row_in_file += n as u64;
        }
    }
    if rows.is_empty() {
        return Err(ShardError::input(path, "no items"));
    }
    Ok(match header.flatten() {
        Some(h) => {
            let mut table = SidTable::new(h);
            for (id, sid) in &rows {
                table.push(id.as_str(), sid);
            }
            table
        }
        None => {
            let layout = columns.layout.clone().expect("checked per shard");
            let last = layout.layers() as u8;
            if !rows
                .iter()
                .any(|(_, sid)| sid.iter().any(|t| t.layer == last))
            {
                return Err(ShardError::input(
                    path,
                    format!(
                        "no SID has a code of layer {last}, the last of the layout {:?}: \
                         is the layout right?",
                        layout.codebook_sizes()
                    ),
                ));
            }
            rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let mut table = SidTable::new(SidHeader::new(&layout, columns.collisions));
            for (id, sid) in &rows {
                table.push(id.as_str(), sid);
            }
            resolve_collisions(&table, columns.collisions)
        }
    })
}

/// The shard's code columns and the projection (id first) to read.
fn code_columns(shard: &Shard, id: usize) -> Result<(CodeColumns, Vec<usize>), ShardError> {
    let schema = shard.schema();
    if let Ok(i) = schema.index_of(CODES_COLUMN) {
        return Ok((CodeColumns::List(CODES_COLUMN.to_owned()), vec![id, i]));
    }
    let mut names = Vec::new();
    let mut projection = vec![id];
    while let Ok(i) = schema.index_of(&format!("layer_{}", names.len() + 1)) {
        names.push(schema.field(i).name().clone());
        projection.push(i);
    }
    if names.is_empty() {
        return Err(ShardError::input(
            &shard.path,
            format!(
                "no SID columns: expected \"codes\" (list<int32>) or layer_1, layer_2, … \
                 (columns: {})",
                column_names(schema)
            ),
        ));
    }
    Ok((CodeColumns::Layers(names), projection))
}

/// The SIDs of a batch; an error gives the batch row, the column and why.
/// Headerless shards hold quantizer codes only (`disambiguated` false):
/// their disambiguation codes are assigned here.
fn batch_sids(
    batch: &RecordBatch,
    codes: &CodeColumns,
    layout: &Layout,
    disambiguated: bool,
) -> Result<Vec<Vec<Token>>, (usize, String, String)> {
    let n = batch.num_rows();
    let max_len = layout.layers() + usize::from(disambiguated);
    let mut out: Vec<Vec<Token>> = vec![Vec::new(); n];
    let mut push = |row: usize, layer: usize, code: Option<i64>, col: &str| {
        let Some(code) = code else { return Ok(()) };
        if layer > max_len {
            let what = if disambiguated {
                "layers + a disambiguation code"
            } else {
                "layers (shards without sidx.header metadata hold quantizer codes \
                 only; is the layout right?)"
            };
            return Err((
                row,
                col.to_owned(),
                format!("{layer} codes, the layout has {} {what}", layout.layers()),
            ));
        }
        let code = u32::try_from(code).map_err(|_| {
            (
                row,
                col.to_owned(),
                format!("code {code} is not a valid code"),
            )
        })?;
        let t = Token::new(layer as u8, code);
        layout.check(t).map_err(|m| (row, col.to_owned(), m))?;
        out[row].push(t);
        Ok(())
    };
    match codes {
        CodeColumns::List(name) => {
            let col = batch.column_by_name(name).expect("projected");
            let Some((values, offsets)) = super::list_rows(col.as_ref()) else {
                return Err((
                    0,
                    name.clone(),
                    format!(
                        "has type {}; SID codes must be a list of integers",
                        col.data_type()
                    ),
                ));
            };
            let ints = int_values(values.as_ref())
                .map_err(|m| (0, name.clone(), format!("list items {m}")))?;
            for (row, &(start, end)) in offsets.iter().enumerate() {
                if col.is_null(row) {
                    return Err((row, name.clone(), "null SID".into()));
                }
                for (j, &code) in ints[start..end].iter().enumerate() {
                    push(row, j + 1, code, name)?;
                }
            }
        }
        CodeColumns::Layers(names) => {
            for (j, name) in names.iter().enumerate() {
                let col = batch.column_by_name(name).expect("projected");
                let ints = int_values(col.as_ref()).map_err(|m| (0, name.clone(), m))?;
                for (row, &code) in ints.iter().enumerate() {
                    push(row, j + 1, code, name)?;
                }
            }
        }
    }
    if let Some(row) = out.iter().position(|s| s.is_empty()) {
        let col = match codes {
            CodeColumns::List(n) => n.clone(),
            CodeColumns::Layers(n) => n.join(", "),
        };
        return Err((row, col, "no codes (every layer is null)".into()));
    }
    Ok(out)
}
