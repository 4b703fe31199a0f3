//! Builds one index version from `(SID, item)` pairs arriving in SID order:
//! the trie is laid out level by level as SIDs stream in, `sids.fst` is
//! written as they come, and the item map is sorted once at the end.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use rayon::prelude::*;

use super::format::TrieArrays;
use super::{IndexError, TokenId, pack_sid, sid_key};

/// Nodes of one depth, in lexicographic (= breadth-first) order.
#[derive(Default)]
struct Level {
    tokens: Vec<TokenId>,
    /// Index of each node's parent within the level above.
    parents: Vec<u32>,
    /// Index (within the level) of each node that ends a SID.
    terminals: Vec<u32>,
    /// Items of each terminal, in order; ids concatenated.
    items_per_sid: Vec<u32>,
    id_ends: Vec<u32>,
    id_bytes: Vec<u8>,
}

/// Streams sorted `(SID, item id)` pairs into an index version's files.
pub struct IndexBuilder {
    levels: Vec<Level>,
    prev: Vec<TokenId>,
    prev_id: Vec<u8>,
    started: bool,
    sids_fst: fst::MapBuilder<BufWriter<File>>,
    key: Vec<u8>,
}

/// What a build wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildCounts {
    pub sids: u64,
    pub items: u64,
    pub nodes: u64,
}

impl IndexBuilder {
    /// Starts a build whose `sids.fst` goes to `sids_fst_path`.
    pub fn new(sids_fst_path: &Path) -> Result<Self, IndexError> {
        let file = File::create(sids_fst_path).map_err(|e| IndexError::io(sids_fst_path, e))?;
        let sids_fst = fst::MapBuilder::new(BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| IndexError::fst(sids_fst_path, e))?;
        Ok(Self {
            levels: Vec::new(),
            prev: Vec::new(),
            prev_id: Vec::new(),
            started: false,
            sids_fst,
            key: Vec::new(),
        })
    }

    /// Adds an item; pairs must come sorted by SID (token ids), then item id.
    pub fn push(&mut self, sid: &[TokenId], id: &str) -> Result<(), IndexError> {
        if sid.is_empty() {
            return Err(IndexError::Input(format!("item {id:?} has an empty SID")));
        }
        if id.is_empty() {
            return Err(IndexError::Input("empty item id".into()));
        }
        let same_sid = self.started && sid == self.prev.as_slice();
        if self.started {
            let order = sid.cmp(&self.prev).then(id.as_bytes().cmp(&self.prev_id));
            if order != std::cmp::Ordering::Greater {
                return Err(IndexError::Input(format!(
                    "input not sorted by (SID, item id) or duplicated at item {id:?}"
                )));
            }
        }
        if !same_sid {
            self.add_sid(sid)?;
        }
        let level = &mut self.levels[sid.len() - 1];
        *level.items_per_sid.last_mut().expect("a SID was added") += 1;
        level.id_bytes.extend_from_slice(id.as_bytes());
        level.id_ends.push(level.id_bytes.len() as u32);
        if level.id_bytes.len() > u32::MAX as usize {
            return Err(IndexError::Input(
                "item ids of one SID length exceed 4 GiB".into(),
            ));
        }
        self.prev_id.clear();
        self.prev_id.extend_from_slice(id.as_bytes());
        self.started = true;
        Ok(())
    }

    fn add_sid(&mut self, sid: &[TokenId]) -> Result<(), IndexError> {
        let common = sid
            .iter()
            .zip(&self.prev)
            .take_while(|(a, b)| a == b)
            .count();
        while self.levels.len() < sid.len() {
            self.levels.push(Level::default());
        }
        for (d, &token) in sid.iter().enumerate().skip(common) {
            let parent = if d == 0 {
                0
            } else {
                self.levels[d - 1].tokens.len() as u32 - 1
            };
            let level = &mut self.levels[d];
            level.tokens.push(token);
            level.parents.push(parent);
        }
        let level = &mut self.levels[sid.len() - 1];
        let node = level.tokens.len() as u32 - 1;
        let ordinal = level.terminals.len() as u64;
        level.terminals.push(node);
        level.items_per_sid.push(0);
        sid_key(sid, &mut self.key);
        self.sids_fst
            .insert(&self.key, pack_sid(sid.len(), ordinal))
            .map_err(|e| IndexError::Input(format!("sids.fst: {e}")))?;
        self.prev.clear();
        self.prev.extend_from_slice(sid);
        Ok(())
    }

    /// Finishes `sids.fst`, writes `items.fst` at `items_fst_path`, and returns the trie arrays.
    pub fn finish(self, items_fst_path: &Path) -> Result<(TrieArrays, BuildCounts), IndexError> {
        let writer = self
            .sids_fst
            .into_inner()
            .map_err(|e| IndexError::Input(format!("sids.fst: {e}")))?;
        let file = writer
            .into_inner()
            .map_err(|e| IndexError::Input(format!("sids.fst: {e}")))?;
        file.sync_all()
            .map_err(|e| IndexError::Input(format!("sids.fst: sync: {e}")))?;
        let arrays = layout_trie(&self.levels);
        write_items_fst(&self.levels, &arrays, items_fst_path)?;
        let counts = BuildCounts {
            sids: arrays.counts().sids,
            items: arrays.counts().items,
            nodes: arrays.counts().nodes,
        };
        Ok((arrays, counts))
    }
}

/// Breadth-first arrays from per-level nodes.
fn layout_trie(levels: &[Level]) -> TrieArrays {
    let nodes = 1 + levels.iter().map(|l| l.tokens.len()).sum::<usize>();
    let mut a = TrieArrays {
        node_token: Vec::with_capacity(nodes),
        first_child: Vec::with_capacity(nodes + 1),
        ..TrieArrays::default()
    };
    a.node_token.push(0);
    for l in levels {
        a.node_token.extend_from_slice(&l.tokens);
    }
    // CSR over breadth-first nodes: node n's children are first_child[n]..first_child[n + 1].
    // Children of consecutive nodes are consecutive, so each entry is the previous
    // node's end; the root's children (level 1) start at node 1.
    a.first_child.push(1);
    let mut end = 1u32;
    if let Some(first) = levels.first() {
        end += first.tokens.len() as u32;
    }
    a.first_child.push(end);
    for (d, l) in levels.iter().enumerate() {
        let mut children = vec![0u32; l.tokens.len()];
        if let Some(next) = levels.get(d + 1) {
            for &p in &next.parents {
                children[p as usize] += 1;
            }
        }
        for c in children {
            end += c;
            a.first_child.push(end);
        }
    }
    debug_assert_eq!(a.first_child.len(), nodes + 1);

    let words = nodes.div_ceil(64);
    a.terminal_words = vec![0u64; words];
    let mut node_base = 1usize;
    a.level_sid_start = vec![0u64; levels.len() + 2];
    let mut sids = 0u64;
    for (d, l) in levels.iter().enumerate() {
        a.level_sid_start[d + 1] = sids;
        for &t in &l.terminals {
            let n = node_base + t as usize;
            a.terminal_words[n / 64] |= 1 << (n % 64);
        }
        sids += l.terminals.len() as u64;
        node_base += l.tokens.len();
    }
    a.level_sid_start[0] = 0;
    *a.level_sid_start.last_mut().expect("depth + 2 entries") = sids;
    a.terminal_rank = Vec::with_capacity(words + 1);
    let mut rank = 0u32;
    for w in &a.terminal_words {
        a.terminal_rank.push(rank);
        rank += w.count_ones();
    }
    a.terminal_rank.push(rank);

    a.sid_item_start.push(0);
    a.id_offsets.push(0);
    let mut items = 0u32;
    for l in levels {
        for &n in &l.items_per_sid {
            items += n;
            a.sid_item_start.push(items);
        }
        let base = a.id_bytes.len() as u32;
        a.id_offsets.extend(l.id_ends.iter().map(|&e| base + e));
        a.id_bytes.extend_from_slice(&l.id_bytes);
    }
    a
}

/// `items.fst`: item id → packed SID ordinal, keys sorted once.
fn write_items_fst(levels: &[Level], a: &TrieArrays, path: &Path) -> Result<(), IndexError> {
    let items = a.id_offsets.len() - 1;
    let id = |i: usize| &a.id_bytes[a.id_offsets[i] as usize..a.id_offsets[i + 1] as usize];
    let mut order: Vec<u32> = (0..items as u32).collect();
    order.par_sort_unstable_by(|&x, &y| id(x as usize).cmp(id(y as usize)));
    // Item ordinal → (SID length, ordinal within that length).
    let mut packed_of_item = vec![0u64; items];
    let mut sid = 0usize;
    for (d, l) in levels.iter().enumerate() {
        for (k, _) in l.terminals.iter().enumerate() {
            let (start, end) = (a.sid_item_start[sid], a.sid_item_start[sid + 1]);
            for i in start..end {
                packed_of_item[i as usize] = pack_sid(d + 1, k as u64);
            }
            sid += 1;
        }
    }
    let file = File::create(path).map_err(|e| IndexError::io(path, e))?;
    let mut b = fst::MapBuilder::new(BufWriter::with_capacity(1 << 20, file))
        .map_err(|e| IndexError::fst(path, e))?;
    for w in order.windows(2) {
        if id(w[0] as usize) == id(w[1] as usize) {
            return Err(IndexError::Input(format!(
                "item {:?} appears with two SIDs",
                String::from_utf8_lossy(id(w[0] as usize))
            )));
        }
    }
    for &i in &order {
        b.insert(id(i as usize), packed_of_item[i as usize])
            .map_err(|e| IndexError::fst(path, e))?;
    }
    let file = b
        .into_inner()
        .map_err(|e| IndexError::fst(path, e))?
        .into_inner()
        .map_err(|e| IndexError::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| IndexError::io(path, e))
}
