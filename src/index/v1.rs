//! A version-1 `trie.bin` (see [`super::format`]), opened and verified. Its
//! `sids.fst` and `items.fst` are checked but never queried: SIDs are found
//! through the trie, and item ids through a map sorted, on the first item
//! lookup, from the trie file's own id table — a forged FST (checksum fixed up) cannot reach
//! the `fst` crate's lookups, which trust its structure.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::OnceLock;

use memmap2::Mmap;
use rayon::prelude::*;

use super::format::{Counts, HEADER_LEN, Sections};
use super::{NodeId, TokenId};

pub struct V1 {
    trie: Mmap,
    counts: Counts,
    sections: Sections,
    /// Item positions (SID order) sorted by item id, sorted on the first
    /// item lookup (beam search never needs it; opening stays O(verify)).
    by_id: OnceLock<Vec<u32>>,
}

impl V1 {
    /// Checks the body checksum and every structural invariant the queries rely on.
    pub fn open(
        trie: Mmap,
        counts: Counts,
        body_crc: u32,
        layer: impl Fn(TokenId) -> u8,
    ) -> Result<Self, String> {
        let sections = counts.sections().ok_or("counts overflow")?;
        if sections.file_len != trie.len() {
            return Err(format!(
                "{} bytes, the header's counts need {} (truncated or padded)",
                trie.len(),
                sections.file_len
            ));
        }
        if crc32c::crc32c(&trie[HEADER_LEN..]) != body_crc {
            return Err("body checksum mismatch (corrupt data)".into());
        }
        let v = Self {
            trie,
            counts,
            sections,
            by_id: OnceLock::new(),
        };
        v.check_structure(&layer)?;
        Ok(v)
    }

    fn by_id(&self) -> &[u32] {
        self.by_id.get_or_init(|| {
            let mut by_id: Vec<u32> = (0..self.counts.items as u32).collect();
            by_id.par_sort_unstable_by(|&a, &b| self.id(a).cmp(self.id(b)));
            by_id
        })
    }

    /// Bytes of each part of `trie.bin` (section padding included).
    pub fn section_bytes(&self) -> Vec<(&'static str, u64)> {
        let s = &self.sections;
        let len = crate::index::format::padded_bytes;
        vec![
            ("child ranges (u32)", len(&[s.first_child])),
            ("tokens", len(&[s.node_token])),
            ("terminal bits", len(&[s.terminal_words, s.terminal_rank])),
            ("items of shared SIDs", len(&[s.sid_item_start])),
            ("item ids", len(&[s.id_offsets, s.id_bytes])),
            (
                "header, SID lengths",
                len(&[(0, HEADER_LEN), s.level_sid_start]),
            ),
        ]
    }

    /// Heap bytes of the item-id map (once an item was looked up).
    pub fn heap_bytes(&self) -> u64 {
        self.by_id.get().map_or(0, |v| (v.capacity() * 4) as u64)
    }

    fn section<T: bytemuck::Pod>(&self, range: (usize, usize)) -> &[T] {
        bytemuck::cast_slice(&self.trie[range.0..range.1])
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn level_sid_start(&self) -> &[u64] {
        self.section(self.sections.level_sid_start)
    }
    fn first_child(&self) -> &[u32] {
        self.section(self.sections.first_child)
    }
    #[inline]
    pub fn node_tokens(&self) -> &[TokenId] {
        self.section(self.sections.node_token)
    }
    fn terminal_words(&self) -> &[u64] {
        self.section(self.sections.terminal_words)
    }
    fn terminal_rank(&self) -> &[u32] {
        self.section(self.sections.terminal_rank)
    }
    fn sid_item_start(&self) -> &[u32] {
        self.section(self.sections.sid_item_start)
    }
    fn id_offsets(&self) -> &[u32] {
        self.section(self.sections.id_offsets)
    }
    fn id_bytes(&self) -> &[u8] {
        &self.trie[self.sections.id_bytes.0..self.sections.id_bytes.1]
    }

    fn id(&self, position: u32) -> &str {
        let o = self.id_offsets();
        let p = position as usize;
        std::str::from_utf8(&self.id_bytes()[o[p] as usize..o[p + 1] as usize]).unwrap_or_default()
    }

    #[inline]
    pub fn child_range(&self, node: NodeId) -> (u32, u32) {
        let fc = self.first_child();
        let n = node as usize;
        match (fc.get(n), fc.get(n + 1)) {
            (Some(&a), Some(&b)) => (a, b),
            // Past the trie: no children.
            _ => (0, 0),
        }
    }

    #[inline]
    pub fn is_terminal(&self, node: NodeId) -> bool {
        let n = node as usize;
        self.terminal_words()
            .get(n / 64)
            .is_some_and(|w| w >> (n % 64) & 1 == 1)
    }

    pub fn sid_ordinal(&self, node: NodeId) -> Option<u64> {
        if !self.is_terminal(node) {
            return None;
        }
        let n = node as usize;
        let below = self.terminal_words()[n / 64] & ((1u64 << (n % 64)) - 1);
        Some(self.terminal_rank()[n / 64] as u64 + below.count_ones() as u64)
    }

    pub fn select_terminal(&self, sid: u64) -> Option<NodeId> {
        let rank = self.terminal_rank();
        let w = rank.partition_point(|&r| r as u64 <= sid).checked_sub(1)?;
        let mut bits = *self.terminal_words().get(w)?;
        for _ in 0..(sid - rank[w] as u64) {
            bits &= bits - 1;
        }
        (bits != 0).then(|| (w * 64) as NodeId + bits.trailing_zeros())
    }

    /// The parent of a non-root node: the node whose child range holds it.
    pub fn parent(&self, node: NodeId) -> NodeId {
        let fc = self.first_child();
        (fc.partition_point(|&c| c <= node) - 1) as NodeId
    }

    pub fn sid_positions(&self, sid: u64) -> Range<u64> {
        if sid >= self.counts.sids {
            return 0..0;
        }
        if self.counts.one_item_per_sid() {
            return sid..sid + 1;
        }
        let s = self.sid_item_start();
        u64::from(s[sid as usize])..u64::from(s[sid as usize + 1])
    }

    pub fn item_id(&self, position: u64) -> Cow<'_, str> {
        Cow::Borrowed(self.id(position as u32))
    }

    pub fn sid_of_item(&self, id: &str) -> Option<u64> {
        let by_id = self.by_id();
        let i = by_id.binary_search_by(|&p| self.id(p).cmp(id)).ok()?;
        let p = by_id[i];
        if self.counts.one_item_per_sid() {
            return Some(u64::from(p));
        }
        let s = self.sid_item_start();
        Some((s.partition_point(|&start| start <= p) - 1) as u64)
    }

    /// Every invariant the queries index by, so that no query can go out of bounds.
    fn check_structure(&self, layer: &impl Fn(TokenId) -> u8) -> Result<(), String> {
        let c = &self.counts;
        let nodes = c.nodes as usize;
        let fc = self.first_child();
        if nodes == 0 || fc[0] != 1 {
            return Err("the root is missing".into());
        }
        if fc.windows(2).any(|w| w[0] > w[1]) || fc[nodes] as usize != nodes {
            return Err("child ranges are not monotone or do not end at the node count".into());
        }
        let tokens = self.node_tokens();
        // Layers rise along a path, so a child's layer exceeds its parent's (the root's is 0).
        for n in 0..nodes {
            if fc[n] as usize <= n {
                return Err(format!("node {n} points to an earlier node"));
            }
            let own = if n == 0 { 0 } else { layer(tokens[n]) };
            let kids = &tokens[fc[n] as usize..fc[n + 1] as usize];
            super::format::check_children(n, own, kids, layer)?;
        }
        let words = self.terminal_words();
        let rank = self.terminal_rank();
        let mut r = 0u32;
        for (w, &bits) in words.iter().enumerate() {
            if rank[w] != r {
                return Err("terminal ranks are inconsistent".into());
            }
            r += bits.count_ones();
        }
        if rank[words.len()] != r || r as u64 != c.sids {
            return Err("terminal count disagrees with the SID count".into());
        }
        if !nodes.is_multiple_of(64) && words.last().is_some_and(|&w| w >> (nodes % 64) != 0) {
            return Err("terminal bits set past the last node".into());
        }
        if c.one_item_per_sid() {
            if c.items != c.sids {
                return Err("one item per SID, yet item and SID counts differ".into());
            }
        } else {
            let starts = self.sid_item_start();
            if starts[0] != 0
                || starts.windows(2).any(|w| w[0] > w[1])
                || starts[c.sids as usize] as u64 != c.items
            {
                return Err("item ranges of SIDs are inconsistent".into());
            }
        }
        let offs = self.id_offsets();
        if offs[0] != 0
            || offs.windows(2).any(|w| w[0] >= w[1])
            || offs[c.items as usize] as u64 != c.id_bytes
        {
            return Err("item id offsets are inconsistent".into());
        }
        let ids = self.id_bytes();
        for w in offs.windows(2) {
            std::str::from_utf8(&ids[w[0] as usize..w[1] as usize])
                .map_err(|_| "an item id is not UTF-8".to_string())?;
        }
        let levels = self.level_sid_start();
        if levels.windows(2).any(|w| w[0] > w[1]) || levels[levels.len() - 1] != c.sids {
            return Err("SID length table is inconsistent".into());
        }
        Ok(())
    }
}
