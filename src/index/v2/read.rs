//! A version-2 `trie.bin`, opened and verified: rank and select structures
//! built over its bit sections, every other section read in place.

use std::borrow::Cow;
use std::ops::Range;

use memmap2::Mmap;
use vers_vecs::{BitVec, RsVec};

use super::starts::{
    DegreeStarts, ONE_SAMPLE_EVERY, ones_from, ones_in_word, positions, select_one,
};
use super::{INTEGER_IDS, ONE_ITEM_PER_SID, Params, Sections, Widths};
use crate::index::format::{Counts, HEADER_LEN};
use crate::index::packed::get;
use crate::index::{NodeId, TokenId, shortcuts};

pub struct Compact {
    map: Mmap,
    counts: Counts,
    params: Params,
    widths: Widths,
    s: Sections,
    louds: RsVec,
    /// Child ranges without `select0`.
    starts: DegreeStarts,
    terminal: RsVec,
    marks: RsVec,
    /// The Elias–Fano high part of integer ids.
    id_high: Option<RsVec>,
    /// The position of every [`ONE_SAMPLE_EVERY`]-th 1 of `id_high`: an
    /// item's id is read with a sampled select (a general select on a
    /// billion items' high bits was most of a streamed update's time).
    id_samples: Vec<u64>,
    /// The first child of each of the top nodes (`0..len - 1` in breadth-
    /// first order, which every beam step passes through), then the end of
    /// the last one's children: a step among them reads one array, as in
    /// format 1, instead of a sample and the LOUDS bits.
    top: Vec<u32>,
}

/// The top nodes are at most this share of the nodes (4 heap bytes each)…
const TOP_SHARE: u64 = 4;
/// … and at most this many (64 MiB).
const TOP_MAX: u64 = 1 << 24;

/// A rank/select vector over the first `len` bits of `words`, which must
/// all be zero past `len`.
fn bit_vector(words: &[u64], len: u64, what: &str) -> Result<RsVec, String> {
    let mut v = BitVec::from_limbs(words);
    let extra = v.len() as u64 - len;
    if extra > 0 && words.last().is_some_and(|&w| w >> (64 - extra) != 0) {
        return Err(format!("{what}: bits set past the end"));
    }
    v.drop_last(extra as usize);
    Ok(RsVec::from_bit_vec(v))
}

impl Compact {
    /// Checks the body checksum and every structural invariant the queries
    /// rely on; `layer` gives the layout layer of a token id.
    pub fn open(
        map: Mmap,
        counts: Counts,
        body_crc: u32,
        layer: impl Fn(TokenId) -> u8,
    ) -> Result<Self, String> {
        if crc32c::crc32c(&map[HEADER_LEN..]) != body_crc {
            return Err("body checksum mismatch (corrupt data)".into());
        }
        let pr = super::params_range();
        if map.len() < pr.1 {
            return Err("truncated before the parameters".into());
        }
        let params = Params::from_words(bytemuck::cast_slice(&map[pr.0..pr.1]))?;
        let s = super::sections(&counts, &params).ok_or("counts overflow")?;
        if s.file_len != map.len() {
            return Err(format!(
                "{} bytes, the header's counts need {} (truncated or padded)",
                map.len(),
                s.file_len
            ));
        }
        let words = |r: (usize, usize)| -> &[u64] { bytemuck::cast_slice(&map[r.0..r.1]) };
        let integer = counts.flags & INTEGER_IDS != 0;
        let louds_len = super::louds_bits(counts.nodes).ok_or("counts overflow")?;
        let louds = bit_vector(words(s.louds), louds_len, "louds")?;
        let terminal = bit_vector(words(s.terminal), counts.nodes, "terminal bits")?;
        let marks = bit_vector(words(s.marks), counts.items, "shortcut marks")?;
        let id_high = if integer {
            let bits = super::id_high_bits(counts.items, &params).ok_or("counts overflow")?;
            Some(bit_vector(words(s.id_high), bits, "id high bits")?)
        } else {
            None
        };
        let starts = DegreeStarts::build(words(s.louds), louds_len, counts.nodes)?;
        let mut c = Self {
            top: Vec::new(),
            id_samples: Vec::new(),
            starts,
            widths: Widths::of(&counts),
            counts,
            params,
            s,
            louds,
            terminal,
            marks,
            id_high,
            map,
        };
        c.check_trie(&layer)?;
        c.id_samples = c.check_items()?;
        c.top = c.top_children();
        Ok(c)
    }

    /// [`Self::top`], from a scan of the (verified) LOUDS bits: node
    /// `n + 1`'s degree bits start one past the `n`-th 0, and a node whose
    /// bits start at `p` has its first child at `p + 1 - n`.
    fn top_children(&self) -> Vec<u32> {
        let k = (self.counts.nodes / TOP_SHARE).min(TOP_MAX) as usize;
        if k == 0 {
            return Vec::new();
        }
        let louds = self.words(self.s.louds);
        let len = super::louds_bits(self.counts.nodes).expect("checked at open");
        let mut top = Vec::with_capacity(k + 1);
        top.push(1);
        top.extend(
            positions(louds, len, false)
                .take(k)
                .enumerate()
                .map(|(n, zero)| (zero + 1 - n) as u32),
        );
        top
    }

    /// Bytes of each part of the file (section padding included).
    pub fn section_bytes(&self) -> Vec<(&'static str, u64)> {
        let s = &self.s;
        let len = crate::index::format::padded_bytes;
        vec![
            ("child ranges (LOUDS)", len(&[s.louds])),
            ("tokens", len(&[s.node_token])),
            ("terminal bits", len(&[s.terminal])),
            ("items of shared SIDs", len(&[s.sid_item_start])),
            ("item order + shortcuts", len(&[s.order, s.marks, s.back])),
            (
                "item ids",
                len(&[s.id_low, s.id_high, s.id_offsets, s.id_bytes]),
            ),
            (
                "header, parameters, SID lengths",
                len(&[(0, HEADER_LEN), s.params, s.level_sid_start]),
            ),
        ]
    }

    /// Heap bytes of the rank/select structures built at open.
    pub fn heap_bytes(&self) -> u64 {
        let high = self.id_high.as_ref().map_or(0, RsVec::heap_size);
        let vecs = self.louds.heap_size() + self.terminal.heap_size() + self.marks.heap_size();
        let samples = 8 * self.id_samples.capacity() + 4 * self.top.capacity();
        (vecs + high + samples) as u64 + self.starts.heap_bytes()
    }

    fn words(&self, r: (usize, usize)) -> &[u64] {
        bytemuck::cast_slice(&self.map[r.0..r.1])
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn level_sid_start(&self) -> &[u64] {
        self.words(self.s.level_sid_start)
    }

    #[inline]
    pub fn node_tokens(&self) -> &[TokenId] {
        bytemuck::cast_slice(&self.map[self.s.node_token.0..self.s.node_token.1])
    }

    /// Children of `node` are the nodes `first..end`: its degree bits start
    /// after the previous node's 0 and end at its own.
    #[inline]
    pub fn child_range(&self, node: NodeId) -> (u32, u32) {
        self.child_range_in(self.words(self.s.louds), node)
    }

    #[inline]
    fn child_range_in(&self, louds: &[u64], node: NodeId) -> (u32, u32) {
        self.top_range(node)
            .unwrap_or_else(|| self.louds_child_range(louds, node))
    }

    /// The child range of a top node; `None` below the top.
    #[inline]
    fn top_range(&self, node: NodeId) -> Option<(u32, u32)> {
        let n = node as usize;
        Some((*self.top.get(n)?, *self.top.get(n + 1)?))
    }

    /// [`Self::child_range`] from the LOUDS bits alone.
    #[inline]
    fn louds_child_range(&self, louds: &[u64], node: NodeId) -> (u32, u32) {
        if node as u64 >= self.counts.nodes {
            return (0, 0);
        }
        let n = node as usize;
        let start = self.starts.start(louds, n);
        let first = (start + 1 - n as u64) as u32;
        let (mut degree, more) = ones_in_word(louds, start);
        if more {
            // A long run of 1s (a wide node): it ends where the next node starts.
            degree = if (n as u64) + 1 < self.counts.nodes {
                self.starts.start(louds, n + 1) - 1 - start
            } else {
                ones_from(louds, start)
            };
        }
        (first, first + degree as u32)
    }

    /// The child ranges of `nodes`, in order, computed in passes whose
    /// loads are independent of each other so that a batch's misses
    /// overlap: every node's sample, then the degree bits each points to,
    /// then the ranges (from cache).
    pub fn child_ranges(&self, nodes: &[NodeId], mut range: impl FnMut((u32, u32))) {
        let count = self.counts.nodes;
        let louds = self.words(self.s.louds);
        let valid = |&&v: &&NodeId| u64::from(v) < count;
        let mut touched = 0u64;
        for &v in nodes.iter().filter(valid) {
            touched ^= match self.top_range(v) {
                Some((first, _)) => u64::from(first),
                None => self.starts.sample(v as usize),
            };
        }
        for &v in nodes
            .iter()
            .filter(valid)
            .filter(|&&v| self.top_range(v).is_none())
        {
            touched ^= self.starts.touch(louds, v as usize);
        }
        std::hint::black_box(touched);
        nodes
            .iter()
            .for_each(|&v| range(self.child_range_in(louds, v)));
    }

    #[inline]
    pub fn is_terminal(&self, node: NodeId) -> bool {
        self.terminal.get(node as usize) == Some(1)
    }

    pub fn sid_ordinal(&self, node: NodeId) -> Option<u64> {
        self.is_terminal(node)
            .then(|| self.terminal.rank1(node as usize) as u64)
    }

    pub fn select_terminal(&self, sid: u64) -> Option<NodeId> {
        (sid < self.counts.sids).then(|| self.terminal.select1(sid as usize) as NodeId)
    }

    /// The parent of a non-root node: its 1 is the (node − 1)-th, and the
    /// 0s before it close the blocks of the nodes before its parent.
    pub fn parent(&self, node: NodeId) -> NodeId {
        let k = node as usize - 1;
        (self.louds.select1(k) - k) as NodeId
    }

    /// Positions (items by SID, then id) of the items of SID `sid`.
    pub fn sid_positions(&self, sid: u64) -> Range<u64> {
        if sid >= self.counts.sids {
            return 0..0;
        }
        if self.counts.flags & ONE_ITEM_PER_SID != 0 {
            return sid..sid + 1;
        }
        let starts = self.words(self.s.sid_item_start);
        let w = self.widths.item_start;
        get(starts, w, sid)..get(starts, w, sid + 1)
    }

    /// The id of the item at `position`.
    pub fn item_id(&self, position: u64) -> Cow<'_, str> {
        self.id_of_ordinal(get(self.words(self.s.order), self.widths.order, position))
    }

    fn id_of_ordinal(&self, k: u64) -> Cow<'_, str> {
        match &self.id_high {
            Some(high) => Cow::Owned(self.integer_id(high, k).to_string()),
            None => Cow::Borrowed(self.string_id(k)),
        }
    }

    fn integer_id(&self, high: &RsVec, k: u64) -> u64 {
        let words = self.words(self.s.id_high);
        let one = select_one(words, &self.id_samples, k as usize, |k| high.select1(k));
        let h = one - k;
        let l = self.params.id_low_bits;
        h << l | get(self.words(self.s.id_low), l, k)
    }

    fn string_id(&self, k: u64) -> &str {
        let offs = self.words(self.s.id_offsets);
        let w = self.widths.id_offset;
        let bytes = &self.map[self.s.id_bytes.0..self.s.id_bytes.1];
        std::str::from_utf8(&bytes[get(offs, w, k) as usize..get(offs, w, k + 1) as usize])
            .unwrap_or_default()
    }

    /// The item ordinal (items by id) of `id`.
    fn ordinal_of(&self, id: &str) -> Option<u64> {
        match &self.id_high {
            Some(high) => self.integer_ordinal(high, super::integer_id(id.as_bytes())?),
            None => {
                let (mut lo, mut hi) = (0u64, self.counts.items);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match self.string_id(mid).cmp(id) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => return Some(mid),
                    }
                }
                None
            }
        }
    }

    /// Elias–Fano lookup: the ids whose high part is `x >> l` lie between
    /// that bucket's closing 0 and the previous one.
    fn integer_ordinal(&self, high: &RsVec, x: u64) -> Option<u64> {
        let l = self.params.id_low_bits;
        let h = x >> l;
        if h > self.params.id_max >> l {
            return None;
        }
        let start = if h == 0 {
            0
        } else {
            high.select0(h as usize - 1) as u64 + 1
        };
        let end = high.select0(h as usize) as u64;
        let low = x & ((1u64 << l) - 1);
        let lows = self.words(self.s.id_low);
        (start - h..end - h).find(|&k| get(lows, l, k) == low)
    }

    /// The SID ordinal of an item.
    pub fn sid_of_item(&self, id: &str) -> Option<u64> {
        let k = self.ordinal_of(id)?;
        let order = self.words(self.s.order);
        let back = self.words(self.s.back);
        let w = self.widths.order;
        let p = shortcuts::inverse(
            k,
            self.params.step,
            |p| get(order, w, p),
            &self.marks,
            |r| get(back, w, r),
        );
        if self.counts.flags & ONE_ITEM_PER_SID != 0 {
            return Some(p);
        }
        // The last SID whose first position is ≤ p.
        let starts = self.words(self.s.sid_item_start);
        let ws = self.widths.item_start;
        let (mut lo, mut hi) = (0u64, self.counts.sids);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if get(starts, ws, mid) <= p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    /// LOUDS, tokens, terminals and SID lengths: what the trie queries index by.
    fn check_trie(&self, layer: &impl Fn(TokenId) -> u8) -> Result<(), String> {
        let c = &self.counts;
        let nodes = c.nodes as usize;
        if nodes == 0 {
            return Err("the root is missing".into());
        }
        if self.louds.rank1(self.louds.len()) != nodes - 1 {
            return Err("the degree bits do not describe a tree of the node count".into());
        }
        let tokens = self.node_tokens();
        let mut block_start = 0usize;
        let louds = self.words(self.s.louds);
        for (n, zero) in positions(louds, self.louds.len() as u64, false).enumerate() {
            let degree = zero - block_start;
            let first = block_start - n + 1;
            block_start = zero + 1;
            let kids = &tokens[first..first + degree];
            if degree > 0 && first <= n {
                return Err(format!("node {n} points to an earlier node"));
            }
            let own = if n == 0 { 0 } else { layer(tokens[n]) };
            crate::index::format::check_children(n, own, kids, layer)?;
            // Every leaf ends a SID, but for the root of an empty version
            // (an update may delete every item).
            if degree == 0 && !self.is_terminal(n as NodeId) && nodes > 1 {
                return Err(format!("leaf node {n} ends no SID"));
            }
        }
        if self.is_terminal(0) {
            return Err("the root is marked as a SID (an empty SID)".into());
        }
        if self.terminal.rank1(nodes) as u64 != c.sids {
            return Err("terminal count disagrees with the SID count".into());
        }
        let levels = self.level_sid_start();
        if levels[0] != 0
            || levels.windows(2).any(|w| w[0] > w[1])
            || levels[levels.len() - 1] != c.sids
        {
            return Err("SID length table is inconsistent".into());
        }
        Ok(())
    }

    /// Item ranges, the item order (a permutation), back pointers and ids;
    /// returns [`Self::id_samples`] (empty for string ids).
    fn check_items(&self) -> Result<Vec<u64>, String> {
        let c = &self.counts;
        let w = self.widths;
        if c.flags & ONE_ITEM_PER_SID != 0 {
            if c.items != c.sids {
                return Err("one item per SID, yet item and SID counts differ".into());
            }
        } else {
            let starts = self.words(self.s.sid_item_start);
            let mut prev = get(starts, w.item_start, 0);
            if prev != 0 {
                return Err("item ranges of SIDs do not start at 0".into());
            }
            for s in 1..=c.sids {
                let next = get(starts, w.item_start, s);
                if next <= prev {
                    return Err(format!("SID {} has no items", s - 1));
                }
                prev = next;
            }
            if prev != c.items {
                return Err("item ranges of SIDs do not end at the item count".into());
            }
        }
        let order = self.words(self.s.order);
        let mut seen = vec![0u64; c.items.div_ceil(64) as usize];
        for p in 0..c.items {
            let k = get(order, w.order, p);
            if k >= c.items || seen[(k / 64) as usize] >> (k % 64) & 1 == 1 {
                return Err(format!(
                    "the item order is not a permutation (position {p})"
                ));
            }
            seen[(k / 64) as usize] |= 1 << (k % 64);
        }
        if self.marks.rank1(self.marks.len()) as u64 != self.params.marks {
            return Err("shortcut marks disagree with their count".into());
        }
        let back = self.words(self.s.back);
        if (0..self.params.marks).any(|r| get(back, w.order, r) >= c.items) {
            return Err("a shortcut points past the items".into());
        }
        match &self.id_high {
            Some(high) => self.check_integer_ids(high),
            None => self.check_string_ids().map(|()| Vec::new()),
        }
    }

    /// Checks the ids ascend to the largest; returns [`Self::id_samples`].
    fn check_integer_ids(&self, high: &RsVec) -> Result<Vec<u64>, String> {
        let c = &self.counts;
        if high.rank1(high.len()) as u64 != c.items {
            return Err("integer ids: high bits disagree with the item count".into());
        }
        let l = self.params.id_low_bits;
        let lows = self.words(self.s.id_low);
        let mut prev: Option<u64> = None;
        let high_words = self.words(self.s.id_high);
        let mut samples = Vec::with_capacity(c.items.div_ceil(ONE_SAMPLE_EVERY as u64) as usize);
        for (k, one) in positions(high_words, high.len() as u64, true).enumerate() {
            if k % ONE_SAMPLE_EVERY == 0 {
                samples.push(one as u64);
            }
            let id = ((one - k) as u64) << l | get(lows, l, k as u64);
            if prev.is_some_and(|p| id <= p) {
                return Err(format!(
                    "integer ids are not strictly ascending at ordinal {k}"
                ));
            }
            prev = Some(id);
        }
        if prev.unwrap_or(0) != self.params.id_max {
            return Err("the largest integer id disagrees with the parameters".into());
        }
        Ok(samples)
    }

    fn check_string_ids(&self) -> Result<(), String> {
        let c = &self.counts;
        let offs = self.words(self.s.id_offsets);
        let w = self.widths.id_offset;
        if get(offs, w, 0) != 0 || get(offs, w, c.items) != c.id_bytes {
            return Err("item id offsets do not span the id bytes".into());
        }
        let bytes = &self.map[self.s.id_bytes.0..self.s.id_bytes.1];
        let mut prev: Option<&[u8]> = None;
        for k in 0..c.items {
            let (a, b) = (get(offs, w, k), get(offs, w, k + 1));
            if b <= a {
                return Err(format!("item id offsets are not ascending at ordinal {k}"));
            }
            let id = &bytes[a as usize..b as usize];
            if std::str::from_utf8(id).is_err() {
                return Err(format!("item id of ordinal {k} is not UTF-8"));
            }
            if prev.is_some_and(|p| id <= p) {
                return Err(format!(
                    "item ids are not strictly ascending at ordinal {k}"
                ));
            }
            prev = Some(id);
        }
        Ok(())
    }
}
