//! SIDs as a `.npy` array of quantizer codes `[N, L]` plus an id file (one
//! item id per line, row order) — the binary input for catalogs too large
//! to round-trip through a TSV.

use std::path::Path;

use super::{CollisionMode, Layout, SidError, SidHeader, SidTable, resolve_collisions};

impl SidTable {
    /// Reads codes of `layout` from `codes` (ints, `[items, layers]`) and
    /// the item ids from `ids` (default: the row numbers), and resolves
    /// items sharing a SID by `collisions`. Errors name the file and the
    /// row or line.
    pub fn read_codes(
        codes: &Path,
        ids_file: Option<&Path>,
        layout: &Layout,
        collisions: CollisionMode,
    ) -> Result<Self, SidError> {
        let (data, n, l) = crate::npy::read_codes(codes)?;
        let file_err = |path: &Path, msg: String| SidError::File {
            path: path.to_owned(),
            msg,
        };
        if n == 0 {
            return Err(file_err(codes, "no items".into()));
        }
        if data.len() > u32::MAX as usize {
            return Err(file_err(
                codes,
                format!("{n} × {l} codes: more than one table holds (4294967295)"),
            ));
        }
        if l != layout.layers() {
            return Err(file_err(
                codes,
                format!(
                    "{l} codes per item, the layout {:?} has {} layers",
                    layout.codebook_sizes(),
                    layout.layers()
                ),
            ));
        }
        let sizes = layout.codebook_sizes();
        if let Some((k, &c)) = data.iter().enumerate().find(|&(k, &c)| c >= sizes[k % l]) {
            return Err(file_err(
                codes,
                format!(
                    "row {}, layer {}: code {c} is not below the codebook size {}",
                    k / l,
                    k % l + 1,
                    sizes[k % l]
                ),
            ));
        }
        let ids = match ids_file {
            Some(path) => read_ids(path, n)?,
            None => (0..n).map(|i| i.to_string()).collect(),
        };
        let table = SidTable::from_codes(SidHeader::new(layout, collisions), ids, &data);
        if let Some((second, first)) = table.duplicate_id() {
            return Err(SidError::Parse {
                path: ids_file.unwrap_or(codes).to_owned(),
                line: second + 1,
                msg: format!(
                    "duplicate item id {:?} (first seen on line {})",
                    table.id(second),
                    first + 1
                ),
            });
        }
        Ok(resolve_collisions(&table, collisions))
    }
}

/// One item id per line (a trailing CR dropped), exactly `n` of them.
fn read_ids(path: &Path, n: usize) -> Result<Vec<String>, SidError> {
    let text = std::fs::read_to_string(path).map_err(|e| SidError::File {
        path: path.to_owned(),
        msg: format!("cannot read the item ids: {e}"),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut ids = Vec::with_capacity(n);
    for (i, line) in text.split('\n').enumerate() {
        let id = line.strip_suffix('\r').unwrap_or(line);
        if id.is_empty() || id.trim() != id || id.contains('\t') {
            return Err(SidError::Parse {
                path: path.to_owned(),
                line: i + 1,
                msg: format!("item id {id:?} is empty, has surrounding spaces or a TAB"),
            });
        }
        ids.push(id.to_owned());
    }
    if ids.len() != n {
        return Err(SidError::File {
            path: path.to_owned(),
            msg: format!("{} item ids for {n} rows of codes", ids.len()),
        });
    }
    Ok(ids)
}
