//! Encodes the breadth-first arrays of a build as a version-2 `trie.bin`.

use std::io::{self, Write};

use rayon::prelude::*;

use super::{INTEGER_IDS, Params, SHORTCUT_STEP, VERSION, Widths, integer_id};
use crate::index::IndexError;
use crate::index::format::{self, Counts, ONE_ITEM_PER_SID, TrieArrays};
use crate::index::packed::{self, width_for};
use crate::index::shortcuts;

/// The sections of a version-2 file, ready to be written.
pub struct Encoded {
    counts: Counts,
    params: Params,
    level_sid_start: Vec<u64>,
    louds: Vec<u64>,
    node_token: Vec<u16>,
    terminal: Vec<u64>,
    sid_item_start: Vec<u64>,
    order: Vec<u64>,
    marks: Vec<u64>,
    back: Vec<u64>,
    id_low: Vec<u64>,
    id_high: Vec<u64>,
    id_offsets: Vec<u64>,
    id_bytes: Vec<u8>,
}

/// Encodes `a` (items in position order: by SID ordinal, then id); refuses
/// an item id that appears twice.
pub fn encode(a: &TrieArrays) -> Result<Encoded, IndexError> {
    let items = a.id_offsets.len() - 1;
    let id = |p: usize| &a.id_bytes[a.id_offsets[p] as usize..a.id_offsets[p + 1] as usize];
    let ints: Option<Vec<u64>> = (0..items)
        .into_par_iter()
        .map(|p| integer_id(id(p)))
        .collect();
    // Positions in item order: by integer value, or by id bytes.
    let mut by_id: Vec<u32> = (0..items as u32).collect();
    match &ints {
        Some(v) => by_id.par_sort_unstable_by_key(|&p| v[p as usize]),
        None => by_id.par_sort_unstable_by(|&x, &y| id(x as usize).cmp(id(y as usize))),
    }
    if let Some(w) = by_id
        .windows(2)
        .find(|w| id(w[0] as usize) == id(w[1] as usize))
    {
        return Err(IndexError::Input(format!(
            "item {:?} appears with two SIDs",
            String::from_utf8_lossy(id(w[0] as usize))
        )));
    }
    let mut item_of_position = vec![0u32; items];
    for (k, &p) in by_id.iter().enumerate() {
        item_of_position[p as usize] = k as u32;
    }

    let mut counts = Counts {
        nodes: a.node_token.len() as u64,
        sids: a.sids,
        items: items as u64,
        id_bytes: 0,
        depth: a.level_sid_start.len().saturating_sub(2) as u32,
        flags: a.flags & ONE_ITEM_PER_SID,
    };
    let (mut id_low, mut id_high, mut id_offsets, mut id_bytes) = (vec![], vec![], vec![], vec![]);
    let mut params = Params {
        step: SHORTCUT_STEP,
        ..Params::default()
    };
    match &ints {
        Some(v) => {
            counts.flags |= INTEGER_IDS;
            let sorted: Vec<u64> = by_id.iter().map(|&p| v[p as usize]).collect();
            params.id_max = sorted.last().copied().unwrap_or(0);
            let spread = params.id_max / (items.max(1) as u64);
            params.id_low_bits = if spread == 0 {
                0
            } else {
                63 - spread.leading_zeros()
            };
            let low_mask = (1u64 << params.id_low_bits) - 1;
            id_low = packed::pack(sorted.iter().map(|&x| x & low_mask), params.id_low_bits);
            let high_bits = super::id_high_bits(items as u64, &params).expect("fits");
            id_high = vec![0u64; high_bits.div_ceil(64) as usize];
            for (k, &x) in sorted.iter().enumerate() {
                let bit = (x >> params.id_low_bits) + k as u64;
                id_high[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        None => {
            let total: usize = (0..items).map(|p| id(p).len()).sum();
            counts.id_bytes = total as u64;
            let mut offsets =
                packed::PackedWriter::with_capacity(width_for(total as u64), items + 1);
            offsets.push(0);
            id_bytes.reserve(total);
            for &p in &by_id {
                id_bytes.extend_from_slice(id(p as usize));
                offsets.push(id_bytes.len() as u64);
            }
            id_offsets = offsets.finish();
        }
    }
    let widths = Widths::of(&counts);
    let order = packed::pack(item_of_position.iter().map(|&k| u64::from(k)), widths.order);
    let cuts = shortcuts::build(items as u64, params.step, |p| {
        u64::from(item_of_position[p as usize])
    });
    params.marks = cuts.back.len() as u64;
    let back = packed::pack(cuts.back.iter().copied(), widths.order);
    let sid_item_start = if counts.flags & ONE_ITEM_PER_SID != 0 {
        Vec::new()
    } else {
        packed::pack(
            a.sid_item_start.iter().map(|&s| u64::from(s)),
            widths.item_start,
        )
    };
    Ok(Encoded {
        counts,
        params,
        level_sid_start: a.level_sid_start.clone(),
        louds: louds(&a.first_child),
        node_token: a.node_token.clone(),
        terminal: a.terminal_words.clone(),
        sid_item_start,
        order,
        marks: cuts.marks,
        back,
        id_low,
        id_high,
        id_offsets,
        id_bytes,
    })
}

/// The LOUDS degree bits of breadth-first child ranges: per node, one 1 per child, then a 0.
fn louds(first_child: &[u32]) -> Vec<u64> {
    let nodes = first_child.len() - 1;
    let len = super::louds_bits(nodes as u64).expect("a built trie's node count fits");
    let mut bits = vec![0u64; len.div_ceil(64) as usize];
    let mut at = 0usize;
    for w in first_child.windows(2) {
        for b in at..at + (w[1] - w[0]) as usize {
            bits[b / 64] |= 1 << (b % 64);
        }
        at += (w[1] - w[0]) as usize + 1;
    }
    bits
}

impl Encoded {
    /// Writes header and body; returns the bytes written.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<u64> {
        let params = self.params.to_words();
        let sections: [&[u8]; 13] = [
            bytemuck::cast_slice(&params),
            bytemuck::cast_slice(&self.level_sid_start),
            bytemuck::cast_slice(&self.louds),
            bytemuck::cast_slice(&self.node_token),
            bytemuck::cast_slice(&self.terminal),
            bytemuck::cast_slice(&self.sid_item_start),
            bytemuck::cast_slice(&self.order),
            bytemuck::cast_slice(&self.marks),
            bytemuck::cast_slice(&self.back),
            bytemuck::cast_slice(&self.id_low),
            bytemuck::cast_slice(&self.id_high),
            bytemuck::cast_slice(&self.id_offsets),
            &self.id_bytes,
        ];
        format::write_file(w, VERSION, &self.counts, &sections)
    }
}
