//! Streams a build's nodes and items straight into version-2 sections:
//! per depth, the nodes' tokens, LOUDS degree bits and terminal bits grow
//! as SIDs arrive in order (a depth's nodes arrive in breadth-first order),
//! and the depths are concatenated at the end. Integer item ids are kept
//! as `u64`s — 8 bytes an item while building, no strings — so a build
//! holds about 10.5 bytes per SID before the item order is ranked.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use vers_vecs::{BitVec, RsVec};

use super::{INTEGER_IDS, ONE_ITEM_PER_SID, Params, SHORTCUT_STEP, VERSION, Widths, integer_id};
use crate::index::format::{self, Counts};
use crate::index::packed::{self, width_for};
use crate::index::{IndexError, TokenId, shortcuts};

/// Bits appended one at a time, little-endian in `u64` words.
#[derive(Default)]
struct Bits {
    words: Vec<u64>,
    len: u64,
}

impl Bits {
    fn push(&mut self, bit: bool) {
        if self.len.is_multiple_of(64) {
            self.words.push(0);
        }
        if bit {
            *self.words.last_mut().expect("a word was pushed") |= 1 << (self.len % 64);
        }
        self.len += 1;
    }

    fn set_last(&mut self) {
        let i = self.len - 1;
        self.words[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// Appends `other`'s bits after this one's.
    fn append(&mut self, other: &Bits) {
        let off = self.len % 64;
        if off == 0 {
            self.words.extend_from_slice(&other.words);
        } else {
            for &w in &other.words {
                *self.words.last_mut().expect("a partly filled word") |= w << off;
                self.words.push(w >> (64 - off));
            }
        }
        self.len += other.len;
        self.words.truncate(self.len.div_ceil(64) as usize);
    }
}

/// The nodes (and the items of the SIDs) of one depth.
#[derive(Default)]
struct Depth {
    tokens: Vec<TokenId>,
    /// One 1 per child of each node, then a 0 once the node is complete.
    louds: Bits,
    terminal: Bits,
    sids: u64,
    /// Items of each SID of this depth; kept only once some SID holds several.
    items_per_sid: Vec<u32>,
    /// Item ids while every id so far is an integer.
    ints: Vec<u64>,
    /// Item ids (concatenated) once one is not.
    id_bytes: Vec<u8>,
    id_ends: Vec<usize>,
}

impl Depth {
    fn items(&self) -> usize {
        self.ints.len() + self.id_ends.len()
    }

    fn id(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.id_ends[i - 1] };
        &self.id_bytes[start..self.id_ends[i]]
    }

    fn push_id(&mut self, id: &[u8]) {
        self.id_bytes.extend_from_slice(id);
        self.id_ends.push(self.id_bytes.len());
    }
}

/// A version-2 trie file under construction.
#[derive(Default)]
pub struct Builder {
    depths: Vec<Depth>,
    root_degree: u64,
    /// Some SID holds more than one item.
    shared: bool,
    /// Every item id so far is a canonical decimal `u64`.
    strings: bool,
}

impl Builder {
    /// Adds a node at `depth` (0: a child of the root) under the last node
    /// of the depth above.
    pub fn add_node(&mut self, depth: usize, token: TokenId) {
        while self.depths.len() <= depth {
            self.depths.push(Depth::default());
        }
        let d = &mut self.depths[depth];
        if !d.tokens.is_empty() {
            d.louds.push(false);
        }
        d.tokens.push(token);
        d.terminal.push(false);
        match depth.checked_sub(1) {
            Some(up) => self.depths[up].louds.push(true),
            None => self.root_degree += 1,
        }
    }

    /// Marks the last node at `depth` as the end of a new SID.
    pub fn end_sid(&mut self, depth: usize) {
        let d = &mut self.depths[depth];
        d.terminal.set_last();
        d.sids += 1;
        if self.shared {
            d.items_per_sid.push(0);
        }
    }

    /// Adds an item to the last SID ended at `depth`; `again` when that SID
    /// already has one.
    pub fn add_item(&mut self, depth: usize, id: &str, again: bool) {
        match integer_id(id.as_bytes()) {
            Some(v) if !self.strings => self.add_integer_item(depth, v, again),
            _ => {
                self.count_item(depth, again);
                if !self.strings {
                    self.keep_ids_as_strings();
                }
                self.depths[depth].push_id(id.as_bytes());
            }
        }
    }

    /// [`add_item`](Self::add_item) of an item whose id is the canonical decimal `id`.
    pub fn add_integer_item(&mut self, depth: usize, id: u64, again: bool) {
        self.count_item(depth, again);
        if self.strings {
            self.depths[depth].push_id(id.to_string().as_bytes());
        } else {
            self.depths[depth].ints.push(id);
        }
    }

    fn count_item(&mut self, depth: usize, again: bool) {
        if again && !self.shared {
            // Until now every SID held one item; this one gets its second below.
            self.shared = true;
            for d in &mut self.depths {
                d.items_per_sid = vec![1; d.sids as usize];
            }
        }
        if self.shared {
            *self.depths[depth]
                .items_per_sid
                .last_mut()
                .expect("the SID was ended") += 1;
        }
    }

    /// Turns the integer ids kept so far into strings.
    fn keep_ids_as_strings(&mut self) {
        self.strings = true;
        for d in &mut self.depths {
            for v in std::mem::take(&mut d.ints) {
                d.push_id(v.to_string().as_bytes());
            }
        }
    }

    /// Encodes the sections; refuses an item id that appears twice.
    pub fn finish(mut self) -> Result<Encoded, IndexError> {
        let depth = self.depths.len();
        let mut louds = Bits::default();
        for _ in 0..self.root_degree {
            louds.push(true);
        }
        louds.push(false);
        let mut terminal = Bits::default();
        terminal.push(false);
        let mut level_sid_start = vec![0u64; depth + 2];
        let mut sids = 0u64;
        for (k, d) in self.depths.iter_mut().enumerate() {
            if !d.tokens.is_empty() {
                d.louds.push(false);
            }
            louds.append(&d.louds);
            terminal.append(&d.terminal);
            d.louds = Bits::default();
            d.terminal = Bits::default();
            level_sid_start[k + 1] = sids;
            sids += d.sids;
        }
        level_sid_start[depth + 1] = sids;
        let nodes = 1 + self
            .depths
            .iter()
            .map(|d| d.tokens.len() as u64)
            .sum::<u64>();
        let items: u64 = self.depths.iter().map(|d| d.items() as u64).sum();
        let mut counts = Counts {
            nodes,
            sids,
            items,
            id_bytes: 0,
            depth: depth as u32,
            flags: if self.shared { 0 } else { ONE_ITEM_PER_SID },
        };
        let sid_item_start = if self.shared {
            let width = width_for(items);
            let mut w = packed::PackedWriter::with_capacity(width, sids as usize + 1);
            let mut at = 0u64;
            w.push(0);
            for n in self.depths.iter().flat_map(|d| &d.items_per_sid) {
                at += u64::from(*n);
                w.push(at);
            }
            w.finish()
        } else {
            Vec::new()
        };
        let mut params = Params {
            step: SHORTCUT_STEP,
            ..Params::default()
        };
        let ids = if self.strings {
            let ids = StringIds::sort(&self.depths)?;
            counts.id_bytes = ids.bytes.len() as u64;
            ids
        } else {
            counts.flags |= INTEGER_IDS;
            StringIds::default()
        };
        let widths = Widths::of(&counts);
        let (order, elias_fano) = if self.strings {
            (ids.order(items, widths.order), None)
        } else {
            let ranks = IntRanks::of(&self.depths, items)?;
            let order = ranks.order(&self.depths, items, widths.order);
            let ef = ranks.elias_fano(items, &mut params);
            (order, Some(ef))
        };
        // The item ids are in the sections now; the shortcuts need only the order.
        for d in &mut self.depths {
            d.ints = Vec::new();
            d.id_bytes = Vec::new();
            d.id_ends = Vec::new();
        }
        let cuts = shortcuts::build(items, params.step, |p| packed::get(&order, widths.order, p));
        params.marks = cuts.back.len() as u64;
        let back = packed::pack(cuts.back.iter().copied(), widths.order);
        let (id_low, id_high) = elias_fano.unwrap_or_default();
        Ok(Encoded {
            counts,
            params,
            level_sid_start,
            louds: louds.words,
            tokens: self.depths.into_iter().map(|d| d.tokens).collect(),
            terminal: terminal.words,
            sid_item_start,
            order,
            marks: cuts.marks,
            back,
            id_low,
            id_high,
            id_offsets: ids.offsets,
            id_bytes: ids.bytes,
        })
    }
}

/// Item positions (by SID ordinal, then id) in depth order: `(depth, index)`.
fn positions(depths: &[Depth]) -> impl Fn(u64) -> (usize, usize) + Sync + '_ {
    let mut starts = Vec::with_capacity(depths.len() + 1);
    let mut at = 0u64;
    for d in depths {
        starts.push(at);
        at += d.items() as u64;
    }
    move |p| {
        let k = starts.partition_point(|&s| s <= p) - 1;
        (k, (p - starts[k]) as usize)
    }
}

/// Packs `value(p)` for every position `p < len`, in parallel runs of 64
/// elements (each run fills whole words).
fn pack_parallel(len: u64, width: u32, value: impl Fn(u64) -> u64 + Sync) -> Vec<u64> {
    let mut words = vec![0u64; packed::words_for(len, width).unwrap_or(0) as usize];
    if width == 0 {
        return words;
    }
    words
        .par_chunks_mut(width as usize)
        .enumerate()
        .for_each(|(run, out)| {
            let first = run as u64 * 64;
            for j in 0..64.min(len - first) {
                packed::set(out, width, j, value(first + j));
            }
        });
    words
}

/// String item ids in item order.
#[derive(Default)]
struct StringIds {
    /// Positions in item order.
    by_id: Vec<u32>,
    offsets: Vec<u64>,
    bytes: Vec<u8>,
}

impl StringIds {
    fn sort(depths: &[Depth]) -> Result<Self, IndexError> {
        let at = positions(depths);
        let id = |p: u32| {
            let (k, i) = at(u64::from(p));
            depths[k].id(i)
        };
        let items: usize = depths.iter().map(Depth::items).sum();
        let mut by_id: Vec<u32> = (0..items as u32).collect();
        by_id.par_sort_unstable_by(|&x, &y| id(x).cmp(id(y)));
        if let Some(w) = by_id.windows(2).find(|w| id(w[0]) == id(w[1])) {
            return Err(twice(&String::from_utf8_lossy(id(w[0]))));
        }
        let total: usize = depths.iter().map(|d| d.id_bytes.len()).sum();
        let mut offsets = packed::PackedWriter::with_capacity(width_for(total as u64), items + 1);
        let mut bytes = Vec::with_capacity(total);
        offsets.push(0);
        for &p in &by_id {
            bytes.extend_from_slice(id(p));
            offsets.push(bytes.len() as u64);
        }
        Ok(Self {
            by_id,
            offsets: offsets.finish(),
            bytes,
        })
    }

    /// Position → item ordinal, packed.
    fn order(&self, items: u64, width: u32) -> Vec<u64> {
        let mut of_position = vec![0u32; items as usize];
        for (k, &p) in self.by_id.iter().enumerate() {
            of_position[p as usize] = k as u32;
        }
        pack_parallel(items, width, |p| u64::from(of_position[p as usize]))
    }
}

/// The rank of each integer id among all of them.
struct IntRanks {
    max: u64,
    kind: Ranks,
}

enum Ranks {
    /// The ids are `0..items`.
    Identity,
    /// A bit per value up to the largest id (when that is at most 64 bits an
    /// item): the words and their rank directory.
    Dense(Vec<u64>, RsVec),
    /// The ids sorted.
    Sparse(Vec<u64>),
}

impl IntRanks {
    fn of(depths: &[Depth], items: u64) -> Result<Self, IndexError> {
        let all = || depths.par_iter().flat_map(|d| d.ints.par_iter().copied());
        let max = all().max().unwrap_or(0);
        let kind = if max / 64 <= items {
            let seen: Vec<AtomicU64> = (0..max / 64 + 1).map(|_| AtomicU64::new(0)).collect();
            let first_twice = AtomicU64::new(u64::MAX);
            all().for_each(|v| {
                let bit = 1u64 << (v % 64);
                if seen[(v / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                    first_twice.fetch_min(v, Ordering::Relaxed);
                }
            });
            // u64::MAX itself is never dense (it would need 2^58 words).
            let first = first_twice.into_inner();
            if first != u64::MAX {
                return Err(twice(&first.to_string()));
            }
            if max + 1 == items {
                // `items` distinct ids in 0..items: each is its own rank.
                Ranks::Identity
            } else {
                let words: Vec<u64> = seen.into_iter().map(AtomicU64::into_inner).collect();
                let ranks = RsVec::from_bit_vec(BitVec::from_limbs(&words));
                Ranks::Dense(words, ranks)
            }
        } else {
            let mut sorted: Vec<u64> = all().collect();
            sorted.par_sort_unstable();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(twice(&w[0].to_string()));
            }
            Ranks::Sparse(sorted)
        };
        Ok(Self { max, kind })
    }

    fn rank(&self, v: u64) -> u64 {
        match &self.kind {
            Ranks::Identity => v,
            Ranks::Dense(_, ranks) => ranks.rank1(v as usize) as u64,
            Ranks::Sparse(sorted) => sorted.partition_point(|&x| x < v) as u64,
        }
    }

    fn order(&self, depths: &[Depth], items: u64, width: u32) -> Vec<u64> {
        let at = positions(depths);
        pack_parallel(items, width, |p| {
            let (k, i) = at(p);
            self.rank(depths[k].ints[i])
        })
    }

    /// The ids in order.
    fn sorted(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match &self.kind {
            Ranks::Identity => Box::new(0..=self.max),
            Ranks::Dense(words, _) => {
                let len = words.len() as u64 * 64;
                Box::new(super::starts::positions(words, len, true).map(|p| p as u64))
            }
            Ranks::Sparse(sorted) => Box::new(sorted.iter().copied()),
        }
    }

    /// The ids in order, as Elias–Fano `(low, high)`; sets `params`' id fields.
    fn elias_fano(&self, items: u64, params: &mut Params) -> (Vec<u64>, Vec<u64>) {
        params.id_max = self.max;
        let spread = params.id_max / items.max(1);
        params.id_low_bits = if spread == 0 {
            0
        } else {
            63 - spread.leading_zeros()
        };
        let low_mask = (1u64 << params.id_low_bits) - 1;
        let high_bits = super::id_high_bits(items, params).expect("fits");
        let mut high = vec![0u64; high_bits.div_ceil(64) as usize];
        let mut low = packed::PackedWriter::with_capacity(params.id_low_bits, items as usize);
        for (k, x) in self.sorted().enumerate() {
            low.push(x & low_mask);
            let bit = (x >> params.id_low_bits) + k as u64;
            high[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        (low.finish(), high)
    }
}

fn twice(id: &str) -> IndexError {
    IndexError::Input(format!("item {id:?} appears with two SIDs"))
}

fn one(section: &[u8]) -> Vec<&[u8]> {
    vec![section]
}

/// The sections of a version-2 file, ready to be written.
pub struct Encoded {
    counts: Counts,
    params: Params,
    level_sid_start: Vec<u64>,
    louds: Vec<u64>,
    /// The tokens of each depth (the root's 0 is written before them).
    tokens: Vec<Vec<TokenId>>,
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

impl Encoded {
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Writes header and body; returns the bytes written.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<u64> {
        let params = self.params.to_words();
        let root: [TokenId; 1] = [0];
        let mut node_token: Vec<&[u8]> = vec![bytemuck::cast_slice(&root)];
        node_token.extend(self.tokens.iter().map(|t| bytemuck::cast_slice::<_, u8>(t)));
        let sections: [Vec<&[u8]>; 13] = [
            one(bytemuck::cast_slice(&params)),
            one(bytemuck::cast_slice(&self.level_sid_start)),
            one(bytemuck::cast_slice(&self.louds)),
            node_token,
            one(bytemuck::cast_slice(&self.terminal)),
            one(bytemuck::cast_slice(&self.sid_item_start)),
            one(bytemuck::cast_slice(&self.order)),
            one(bytemuck::cast_slice(&self.marks)),
            one(bytemuck::cast_slice(&self.back)),
            one(bytemuck::cast_slice(&self.id_low)),
            one(bytemuck::cast_slice(&self.id_high)),
            one(bytemuck::cast_slice(&self.id_offsets)),
            one(&self.id_bytes),
        ];
        format::write_file(w, VERSION, &self.counts, &sections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_append_at_every_offset() {
        for a in 0..130u64 {
            for b in [0u64, 1, 63, 64, 65, 129] {
                let bit = |i: u64| (i * 7 + 3) % 5 < 2;
                let (mut x, mut y) = (Bits::default(), Bits::default());
                (0..a).for_each(|i| x.push(bit(i)));
                (0..b).for_each(|i| y.push(bit(a + i)));
                x.append(&y);
                let mut whole = Bits::default();
                (0..a + b).for_each(|i| whole.push(bit(i)));
                assert_eq!((x.len, &x.words), (whole.len, &whole.words), "{a} + {b}");
            }
        }
    }

    /// Items of SIDs `[k]` for `k` in `0..n`, with ids `id(k)`.
    fn build(n: u64, id: impl Fn(u64) -> u64) -> Result<Encoded, IndexError> {
        let mut b = Builder::default();
        for k in 0..n {
            b.add_node(0, k as TokenId);
            b.end_sid(0);
            b.add_item(0, &id(k).to_string(), false);
        }
        b.finish()
    }

    #[test]
    fn dense_and_sparse_ids_rank_alike() {
        let n = 1000;
        let shuffled = |k: u64| (k * 617 + 5) % n;
        let dense = build(n, shuffled).unwrap();
        // Ids 10^6 apart: beyond 64 bits an item, ranked by sorting.
        let far = Depth {
            ints: (0..n).map(|k| k * 1_000_000).collect(),
            ..Depth::default()
        };
        assert!(matches!(
            IntRanks::of(&[far], n).unwrap().kind,
            Ranks::Sparse(_)
        ));
        let sparse = build(n, |k| shuffled(k) * 1_000_000).unwrap();
        assert_eq!(dense.order, sparse.order);
        assert_eq!(dense.back, sparse.back);
        let width = width_for(n - 1);
        for p in 0..n {
            assert_eq!(packed::get(&dense.order, width, p), shuffled(p));
        }
        assert_eq!(sparse.params.id_max, (n - 1) * 1_000_000);
    }

    #[test]
    fn an_id_twice_is_named_in_either_ranking() {
        for scale in [1, 1_000_000] {
            let err = build(100, |k| (k % 60) * scale).err().expect("a duplicate");
            assert!(err.to_string().contains(&format!("\"{}\"", 0)), "{err}");
        }
    }
}
