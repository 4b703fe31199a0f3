//! `trie.bin` format version 2: the same checksummed header as version 1
//! ([`super::format`]), compact sections, and no FST files beside it.
//!
//! ```text
//! header (64 bytes, format version 2; flags ONE_ITEM_PER_SID, INTEGER_IDS)
//! body, each section 8-byte aligned (zero padding):
//!   params          u64[4]         id_max, marks, step, id_low_bits
//!   level_sid_start u64[depth + 2] first SID ordinal of each SID length (as v1)
//!   louds           bits[2·nodes − 1]  node n in breadth-first order: one 1 per
//!                                  child, then a 0 (LOUDS degree sequence)
//!   node_token      u16[nodes]     token id on the edge into node n (root: 0)
//!   terminal        bits[nodes]    node n ends a SID; SID ordinal = rank
//!   sid_item_start  packed[sids+1] (shared SIDs only) items of SID s are the
//!                                  positions sid_item_start[s]..[s+1]
//!   order           packed[items]  position p (items by SID, then id) → item
//!                                  ordinal (items by id)
//!   marks           bits[items]    positions with a back pointer (shortcuts)
//!   back            packed[marks]  order^-step of each marked position
//! integer ids (flag INTEGER_IDS): the sorted ids as Elias–Fano
//!   id_low          packed[items], id_low_bits wide
//!   id_high         bits[(id_max >> id_low_bits) + items + 1]
//! string ids: sorted, concatenated
//!   id_offsets      packed[items + 1]
//!   id_bytes        u8[id_bytes]
//! ```
//!
//! `bits[n]` is `ceil(n / 64)` little-endian words, `packed[n]` fixed-width
//! integers ([`super::packed`]), as wide as their largest possible value.
//! Rank and select over the bit sections come from `vers-vecs` `RsVec`s
//! built at open; the arrays are read in place.

mod build;
mod read;
mod starts;

pub(super) use build::Builder;
pub(super) use read::Compact;

use super::format::{Counts, SectionCursor};
use super::packed::{width_for, words_for};

/// Format version of this module's layout.
pub const VERSION: u32 = 2;
/// Header flag: every SID holds one item; `sid_item_start` is empty.
pub const ONE_ITEM_PER_SID: u32 = super::format::ONE_ITEM_PER_SID;
/// Header flag: every item id is a canonical decimal `u64`.
pub const INTEGER_IDS: u32 = 2;
/// Flags a version-2 header may carry.
pub const FLAGS: u32 = ONE_ITEM_PER_SID | INTEGER_IDS;
/// Elements of an item-order cycle between two back pointers.
pub const SHORTCUT_STEP: u64 = 16;
const PARAMS: u64 = 4;

/// The `params` section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// The largest integer item id (0 for string ids).
    pub id_max: u64,
    /// Marked positions (back pointers).
    pub marks: u64,
    pub step: u64,
    pub id_low_bits: u32,
}

impl Params {
    fn to_words(self) -> [u64; PARAMS as usize] {
        [
            self.id_max,
            self.marks,
            self.step,
            u64::from(self.id_low_bits),
        ]
    }

    fn from_words(w: &[u64]) -> Result<Self, String> {
        let p = Self {
            id_max: w[0],
            marks: w[1],
            step: w[2],
            id_low_bits: u32::try_from(w[3]).unwrap_or(u32::MAX),
        };
        if p.step == 0 || p.id_low_bits > 63 {
            return Err(format!(
                "bad parameters (shortcut step {}, {} low id bits)",
                p.step, w[3]
            ));
        }
        Ok(p)
    }
}

/// Widths of the packed sections, from the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Widths {
    pub item_start: u32,
    pub order: u32,
    pub id_offset: u32,
}

impl Widths {
    pub fn of(c: &Counts) -> Self {
        Self {
            item_start: width_for(c.items),
            order: width_for(c.items.saturating_sub(1)),
            id_offset: width_for(c.id_bytes),
        }
    }
}

/// Byte ranges of the sections in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sections {
    pub params: (usize, usize),
    pub level_sid_start: (usize, usize),
    pub louds: (usize, usize),
    pub node_token: (usize, usize),
    pub terminal: (usize, usize),
    pub sid_item_start: (usize, usize),
    pub order: (usize, usize),
    pub marks: (usize, usize),
    pub back: (usize, usize),
    pub id_low: (usize, usize),
    pub id_high: (usize, usize),
    pub id_offsets: (usize, usize),
    pub id_bytes: (usize, usize),
    pub file_len: usize,
}

/// Bits of the LOUDS section; `None` when a (forged) node count overflows.
pub fn louds_bits(nodes: u64) -> Option<u64> {
    Some(nodes.checked_mul(2)?.saturating_sub(1))
}

/// Bits of the Elias–Fano high part.
pub fn id_high_bits(items: u64, p: &Params) -> Option<u64> {
    (p.id_max >> p.id_low_bits)
        .checked_add(items)?
        .checked_add(1)
}

/// The range of the `params` section (first after the header).
pub fn params_range() -> (usize, usize) {
    SectionCursor::new().array(PARAMS, 8).expect("a fixed size")
}

/// The section layout of a version-2 file's bytes, if its header and
/// parameters read (for tools that edit sections, such as the fuzzers).
pub fn file_sections(trie: &[u8]) -> Option<Sections> {
    let h = super::format::parse_header(trie).ok()?;
    let r = params_range();
    let params = Params::from_words(bytemuck::cast_slice(trie.get(r.0..r.1)?)).ok()?;
    sections(&h.counts, &params)
}

/// Section layout, or `None` when the counts overflow the address space.
pub fn sections(c: &Counts, p: &Params) -> Option<Sections> {
    let mut at = SectionCursor::new();
    let w = Widths::of(c);
    let integer = c.flags & INTEGER_IDS != 0;
    let bits = |n: u64| n.div_ceil(64);
    let packed = |n: u64, width: u32| words_for(n, width);
    let shared = c.flags & ONE_ITEM_PER_SID == 0;
    Some(Sections {
        params: at.array(PARAMS, 8)?,
        level_sid_start: at.array(u64::from(c.depth) + 2, 8)?,
        louds: at.array(bits(louds_bits(c.nodes)?), 8)?,
        node_token: at.array(c.nodes, 2)?,
        terminal: at.array(bits(c.nodes), 8)?,
        sid_item_start: at.array(
            if shared {
                packed(c.sids.checked_add(1)?, w.item_start)?
            } else {
                0
            },
            8,
        )?,
        order: at.array(packed(c.items, w.order)?, 8)?,
        marks: at.array(bits(c.items), 8)?,
        back: at.array(packed(p.marks, w.order)?, 8)?,
        id_low: at.array(
            if integer {
                packed(c.items, p.id_low_bits)?
            } else {
                0
            },
            8,
        )?,
        id_high: at.array(
            if integer {
                bits(id_high_bits(c.items, p)?)
            } else {
                0
            },
            8,
        )?,
        id_offsets: at.array(
            if integer {
                0
            } else {
                packed(c.items.checked_add(1)?, w.id_offset)?
            },
            8,
        )?,
        id_bytes: at.array(if integer { 0 } else { c.id_bytes }, 1)?,
        file_len: at.end(),
    })
}

pub use crate::sid::integer_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_node_counts_do_not_overflow_the_layout() {
        // fuzz/regressions/index_open/crash-v2-node-count-overflow
        assert_eq!(louds_bits(u64::MAX), None);
        assert_eq!(louds_bits(1), Some(1));
        let counts = Counts {
            nodes: u64::MAX / 2 + 1,
            sids: 1,
            items: 1,
            id_bytes: 0,
            depth: 1,
            flags: ONE_ITEM_PER_SID | INTEGER_IDS,
        };
        let params = Params {
            step: SHORTCUT_STEP,
            ..Params::default()
        };
        assert_eq!(sections(&counts, &params), None);
    }
}
