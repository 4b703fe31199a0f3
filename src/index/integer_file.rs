//! A SID file of integer item ids read straight into sort records, with no
//! table of ids and tokens in between — the common case, where that table
//! was most of a build's time. Each piece of the file files its records
//! into groups by first token, so the groups sort in parallel and in cache.
//! Anything else (string ids, no header, a SID beyond 8 tokens, a bad line,
//! an id listed twice) is left to the table path, which explains errors.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::IndexError;
use super::sorted::{self, LayerOffsets, Record, SortedTable};
use crate::sid::{ItemSink, Layout, RisingIds, SidHeader, Token};

/// Groups a piece files its records into (by first token, in key order).
const GROUPS: usize = 1024;

/// The items of a SID file of integer ids, in build order.
pub(crate) struct IntegerSids {
    pub header: SidHeader,
    /// Items per code of each quantizer layer.
    pub layer_counts: Vec<Vec<u64>>,
    pub sorted: SortedTable<'static>,
}

/// Reads `bytes` (the SID file at `path`) when every item id is a
/// canonical integer; `None` for the table path.
pub(crate) fn read(bytes: &[u8], path: &Path) -> Result<Option<IntegerSids>, IndexError> {
    let t0 = std::time::Instant::now();
    let parsed = crate::sid::parse_pieces(bytes, path, |h| Piece::new(h.map(SidHeader::layout)))?;
    let (Some(header), None, false) = (parsed.header, &parsed.error, parsed.stopped) else {
        return Ok(None);
    };
    let mut pieces = parsed.pieces;
    let refused = super::check_layout(&header.layout()).is_err();
    if refused || pieces.iter().all(|p| p.records.is_empty()) {
        return Ok(None);
    }
    // Ids rising through the file cannot repeat; otherwise they are checked.
    if !RisingIds::chain(pieces.iter().map(|p| &p.rising)) && any_repeated(&pieces) {
        return Ok(None);
    }
    let t1 = std::time::Instant::now();
    let layer_counts = sum_counts(pieces.iter().map(|p| &p.counts));
    pieces.par_iter_mut().for_each(Piece::group);
    let groups = (0..GROUPS)
        .into_par_iter()
        .map(|g| {
            let len = pieces.iter().map(|p| p.group_slice(g).len()).sum();
            let mut group: Vec<Record> = Vec::with_capacity(len);
            for p in &pieces {
                group.extend_from_slice(p.group_slice(g));
            }
            sorted::sort_records(&mut group)?;
            Ok(group)
        })
        .collect::<Result<Vec<_>, IndexError>>()?;
    tracing::debug!(
        parse_ms = (t1 - t0).as_millis() as u64,
        sort_ms = t1.elapsed().as_millis() as u64,
        "integer-id SID file read"
    );
    Ok(Some(IntegerSids {
        header,
        layer_counts,
        sorted: SortedTable::Integer(groups),
    }))
}

/// Whether an item id appears twice: a bit per value when the ids are
/// dense (at most 64 values an item), else by sorting them.
fn any_repeated(pieces: &[Piece]) -> bool {
    let ids = || {
        pieces
            .par_iter()
            .flat_map(|p| p.records.par_iter().map(|r| r.1))
    };
    let n = pieces.iter().map(|p| p.records.len() as u64).sum::<u64>();
    let max = ids().max().unwrap_or(0);
    if max / 64 <= n {
        let seen: Vec<AtomicU64> = (0..=max / 64).map(|_| AtomicU64::new(0)).collect();
        ids().any(|v| {
            let bit = 1 << (v % 64);
            seen[(v / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit != 0
        })
    } else {
        let mut sorted: Vec<u64> = ids().collect();
        sorted.par_sort_unstable();
        sorted.windows(2).any(|w| w[0] == w[1])
    }
}

/// Adds up the pieces' counts per layer and code.
fn sum_counts<'a>(counts: impl Iterator<Item = &'a Vec<Vec<u64>>>) -> Vec<Vec<u64>> {
    let mut total: Vec<Vec<u64>> = Vec::new();
    for c in counts {
        if total.is_empty() {
            total = c.clone();
            continue;
        }
        for (t, layer) in total.iter_mut().zip(c) {
            for (a, b) in t.iter_mut().zip(layer) {
                *a += b;
            }
        }
    }
    total
}

/// One piece's records: in file order as parsed, then grouped by first token.
struct Piece {
    layout: Option<Layout>,
    /// Codebook size of the first layer: first tokens map onto the groups by it.
    first_layer: u64,
    offsets: LayerOffsets,
    records: Vec<Record>,
    /// End of each group in `records`, once grouped.
    group_ends: Vec<usize>,
    counts: Vec<Vec<u64>>,
    rising: RisingIds,
}

impl Piece {
    fn new(layout: Option<Layout>) -> Self {
        let sizes = layout.as_ref().map_or(&[][..], |l| l.codebook_sizes());
        Self {
            first_layer: sizes.first().map_or(1, |&m| u64::from(m)),
            counts: sizes.iter().map(|&m| vec![0; m as usize]).collect(),
            offsets: layout
                .as_ref()
                .map_or(LayerOffsets::default(), LayerOffsets::of),
            layout,
            records: Vec::new(),
            group_ends: Vec::new(),
            rising: RisingIds::default(),
        }
    }

    fn group_of(&self, key: u128) -> usize {
        let g = u64::from(sorted::first_token(key)) * GROUPS as u64 / self.first_layer;
        (g as usize).min(GROUPS - 1)
    }

    /// Puts the records in group order (a counting sort).
    fn group(&mut self) {
        let mut ends = vec![0usize; GROUPS];
        for r in &self.records {
            ends[self.group_of(r.0)] += 1;
        }
        let mut at = 0;
        for e in &mut ends {
            at += *e;
            *e = at;
        }
        let mut next: Vec<usize> = std::iter::once(0)
            .chain(ends[..GROUPS - 1].iter().copied())
            .collect();
        let mut grouped = vec![(0u128, 0u64); self.records.len()];
        for &r in &self.records {
            let g = self.group_of(r.0);
            grouped[next[g]] = r;
            next[g] += 1;
        }
        self.records = grouped;
        self.group_ends = ends;
    }

    fn group_slice(&self, g: usize) -> &[Record] {
        let start = if g == 0 { 0 } else { self.group_ends[g - 1] };
        &self.records[start..self.group_ends[g]]
    }
}

impl ItemSink for Piece {
    fn item(&mut self, _line: usize, id: &str, sid: &[Token]) -> ControlFlow<()> {
        let (Some(layout), Some(id)) = (&self.layout, crate::sid::integer_id(id.as_bytes())) else {
            return ControlFlow::Break(());
        };
        let Some(key) = self.offsets.key(sid) else {
            return ControlFlow::Break(());
        };
        let layers = layout.layers();
        for t in sid.iter().filter(|t| usize::from(t.layer) <= layers) {
            self.counts[usize::from(t.layer) - 1][t.code as usize] += 1;
        }
        self.rising.see(Some(id));
        self.records.push((key, id));
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(body: &str) -> Option<IntegerSids> {
        let header = r#"#sidx {"format":"sidx-sids","version":1,"codebook_sizes":[64,64],"collisions":"share"}"#;
        read(format!("{header}\n{body}").as_bytes(), Path::new("s.tsv")).unwrap()
    }

    #[test]
    fn integer_ids_are_read_directly_and_anything_else_is_left_to_the_table() {
        let lines = |ids: &mut dyn Iterator<Item = u64>| -> String {
            ids.map(|i| format!("{i}\t1:{} 2:{}\n", i % 64, (i / 64) % 64))
                .collect()
        };
        let rising = direct(&lines(&mut (0..5000))).expect("rising ids read directly");
        let SortedTable::Integer(runs) = &rising.sorted else {
            panic!("not integer records")
        };
        let keys: Vec<u128> = runs.iter().flatten().map(|r| r.0).collect();
        assert_eq!(keys.len(), 5000);
        assert!(keys.is_sorted(), "runs in key order, one after another");
        assert_eq!(rising.layer_counts[0].iter().sum::<u64>(), 5000);
        assert!(
            direct(&lines(&mut (0..5000).rev())).is_some(),
            "unique falling ids"
        );
        // Left to the table path, which explains or handles them.
        assert!(
            direct(&lines(&mut (0..5000).chain([17]))).is_none(),
            "an id twice"
        );
        assert!(direct("a\t1:1\n").is_none(), "a string id");
        assert!(direct("1\t1:1\n2\t1:x\n").is_none(), "a bad line");
        assert!(direct("").is_none(), "no items");
        let headerless = read(b"1\t1:1\n", Path::new("s.tsv")).unwrap();
        assert!(headerless.is_none(), "no header");
    }
}
