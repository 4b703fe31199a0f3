//! Builds one index version from `(SID, item)` pairs arriving in SID order:
//! the trie is laid out level by level as SIDs stream in. Version 1 writes
//! its breadth-first arrays as `trie.bin` at the end, `sids.fst` on its own
//! thread as SIDs come, and sorts the item map into `items.fst` beside the
//! trie file; version 2 streams into its own sections
//! ([`super::v2::Builder`]).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::format::{ONE_ITEM_PER_SID, TrieArrays};
use super::reader::{ITEMS_FST, SIDS_FST, TRIE_FILE};
use super::{IndexError, TokenId, sid_key};
use crate::fsx::Staging;

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

/// SID keys handed to the `sids.fst` thread in batches.
#[derive(Default)]
struct KeyBatch {
    bytes: Vec<u8>,
    ends: Vec<u32>,
    values: Vec<u64>,
}

const BATCH: usize = 1 << 14;

/// Writes `sids.fst` from batches of sorted keys, on its own thread.
struct FstWriter {
    tx: Option<SyncSender<KeyBatch>>,
    thread: Option<JoinHandle<Result<(), IndexError>>>,
    batch: KeyBatch,
}

impl FstWriter {
    fn start(path: &Path) -> Result<Self, IndexError> {
        let file = File::create(path).map_err(|e| IndexError::io(path, e))?;
        let mut fst = fst::MapBuilder::new(BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| IndexError::fst_write(path, e))?;
        let (tx, rx): (SyncSender<KeyBatch>, Receiver<KeyBatch>) = sync_channel(4);
        let fst_path: PathBuf = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("sids-fst".into())
            .spawn(move || {
                for b in rx {
                    let mut start = 0;
                    for (&end, &v) in b.ends.iter().zip(&b.values) {
                        fst.insert(&b.bytes[start as usize..end as usize], v)
                            .map_err(|e| IndexError::fst_write(&fst_path, e))?;
                        start = end;
                    }
                }
                let file = fst
                    .into_inner()
                    .map_err(|e| IndexError::fst_write(&fst_path, e))?
                    .into_inner()
                    .map_err(|e| IndexError::io(&fst_path, e.into_error()))?;
                file.sync_all().map_err(|e| IndexError::io(&fst_path, e))
            })
            .map_err(|e| IndexError::io(path, e))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            batch: KeyBatch::default(),
        })
    }

    fn insert(&mut self, key: &[u8], value: u64) -> Result<(), IndexError> {
        self.batch.bytes.extend_from_slice(key);
        self.batch.ends.push(self.batch.bytes.len() as u32);
        self.batch.values.push(value);
        if self.batch.values.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IndexError> {
        let batch = std::mem::take(&mut self.batch);
        if let Some(tx) = &self.tx
            && tx.send(batch).is_err()
        {
            // The writer stopped early: report its error.
            self.finish()?;
            return Err(IndexError::Internal("the sids.fst writer stopped".into()));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), IndexError> {
        if let Some(tx) = self.tx.take()
            && !self.batch.values.is_empty()
        {
            let _ = tx.send(std::mem::take(&mut self.batch));
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(IndexError::Internal("the sids.fst writer panicked".into()))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for FstWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Streams sorted `(SID, item id)` pairs into an index version's files.
pub struct IndexBuilder {
    prev: Vec<TokenId>,
    prev_id: LastId,
    started: bool,
    trie: Trie,
}

/// The format-specific half of a build.
enum Trie {
    V1(V1Trie),
    V2(super::v2::Builder),
}

/// Version 1: nodes per level, laid out breadth-first at the end.
struct V1Trie {
    levels: Vec<Level>,
    sids_fst: FstWriter,
    key: Vec<u8>,
}

/// What a build wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildCounts {
    pub sids: u64,
    pub items: u64,
    pub nodes: u64,
    pub format_version: u32,
}

impl IndexBuilder {
    /// Starts a build of a version's files into `dir`, in `format_version` (1 or 2).
    pub fn new(dir: &Path, format_version: u32) -> Result<Self, IndexError> {
        let trie = match format_version {
            super::format::VERSION => Trie::V1(V1Trie {
                levels: Vec::new(),
                sids_fst: FstWriter::start(&dir.join(SIDS_FST))?,
                key: Vec::new(),
            }),
            super::v2::VERSION => Trie::V2(super::v2::Builder::default()),
            v => {
                return Err(IndexError::Input(format!(
                    "index format version {v}: this build writes versions {:?}",
                    super::format::VERSIONS
                )));
            }
        };
        Ok(Self {
            prev: Vec::new(),
            prev_id: LastId::default(),
            started: false,
            trie,
        })
    }

    /// Adds an item; pairs must come sorted by SID (token ids), then item id.
    pub fn push(&mut self, sid: &[TokenId], id: &str) -> Result<(), IndexError> {
        self.push_item(sid, ItemId::Text(id))
    }

    /// [`push`](Self::push) of an item whose id is the canonical decimal
    /// `id`, without spelling it out (format 2 stores it as a number).
    pub fn push_integer(&mut self, sid: &[TokenId], id: u64) -> Result<(), IndexError> {
        self.push_item(sid, ItemId::Integer(id))
    }

    fn push_item(&mut self, sid: &[TokenId], id: ItemId<'_>) -> Result<(), IndexError> {
        if sid.is_empty() {
            return Err(IndexError::Input(format!("item {id} has an empty SID")));
        }
        if matches!(id, ItemId::Text("")) {
            return Err(IndexError::Input("empty item id".into()));
        }
        let sid_order = match self.started {
            true => sid.cmp(&self.prev),
            false => std::cmp::Ordering::Greater,
        };
        let same_sid = sid_order.is_eq();
        if self.started {
            let order = sid_order.then_with(|| self.prev_id.cmp_next(id));
            if order != std::cmp::Ordering::Greater {
                return Err(IndexError::Input(format!(
                    "input not sorted by (SID, item id) or duplicated at item {id}"
                )));
            }
        }
        let depth = sid.len() - 1;
        if !same_sid {
            let common = sid
                .iter()
                .zip(&self.prev)
                .take_while(|(a, b)| a == b)
                .count();
            for (d, &token) in sid.iter().enumerate().skip(common) {
                match &mut self.trie {
                    Trie::V1(t) => t.add_node(d, token),
                    Trie::V2(t) => t.add_node(d, token),
                }
            }
            match &mut self.trie {
                Trie::V1(t) => t.end_sid(sid)?,
                Trie::V2(t) => t.end_sid(depth),
            }
            self.prev.clear();
            self.prev.extend_from_slice(sid);
        }
        match (&mut self.trie, id) {
            (Trie::V1(t), id) => id.with_text(|text| t.add_item(depth, text))?,
            (Trie::V2(t), ItemId::Text(text)) => t.add_item(depth, text, same_sid),
            (Trie::V2(t), ItemId::Integer(v)) => t.add_integer_item(depth, v, same_sid),
        }
        self.prev_id.set(id);
        self.started = true;
        Ok(())
    }

    /// Writes `trie.bin` into `dir` (version 1: finishes `sids.fst`, and
    /// writes `items.fst` beside the trie file).
    pub fn finish(self, dir: &Path) -> Result<BuildCounts, IndexError> {
        let trie = dir.join(TRIE_FILE);
        let (counts, format_version) = match self.trie {
            Trie::V1(mut t) => {
                t.sids_fst.finish()?;
                check_totals(&[
                    ("trie nodes", t.nodes()),
                    ("items", t.sum(|l| l.id_ends.len())),
                    ("bytes of item ids", t.sum(|l| l.id_bytes.len())),
                ])?;
                let arrays = layout_trie(&t.levels);
                drop(std::mem::take(&mut t.levels));
                let (items, written) = rayon::join(
                    || write_items_fst(&arrays, &dir.join(ITEMS_FST)),
                    || -> Result<(), IndexError> {
                        let mut staging = Staging::new();
                        staging.write(&trie, |w| arrays.write_to(w).map(|_| ()))?;
                        Ok(staging.commit()?)
                    },
                );
                items?;
                written?;
                (arrays.counts(), super::format::VERSION)
            }
            Trie::V2(t) => {
                let encoded = t.finish()?;
                let counts = encoded.counts();
                check_totals(&[
                    ("trie nodes", counts.nodes as usize),
                    ("items", counts.items as usize),
                ])?;
                let mut staging = Staging::new();
                staging.write(&trie, |w| encoded.write_to(w).map(|_| ()))?;
                staging.commit()?;
                (counts, super::v2::VERSION)
            }
        };
        Ok(BuildCounts {
            sids: counts.sids,
            items: counts.items,
            nodes: counts.nodes,
            format_version,
        })
    }
}

impl V1Trie {
    fn add_node(&mut self, d: usize, token: TokenId) {
        while self.levels.len() <= d {
            self.levels.push(Level::default());
        }
        let parent = if d == 0 {
            0
        } else {
            self.levels[d - 1].tokens.len() as u32 - 1
        };
        let level = &mut self.levels[d];
        level.tokens.push(token);
        level.parents.push(parent);
    }

    fn end_sid(&mut self, sid: &[TokenId]) -> Result<(), IndexError> {
        let level = &mut self.levels[sid.len() - 1];
        let node = level.tokens.len() as u32 - 1;
        let ordinal = level.terminals.len() as u64;
        level.terminals.push(node);
        level.items_per_sid.push(0);
        sid_key(sid, &mut self.key);
        self.sids_fst.insert(&self.key, ordinal)
    }

    fn add_item(&mut self, depth: usize, id: &str) -> Result<(), IndexError> {
        let level = &mut self.levels[depth];
        *level.items_per_sid.last_mut().expect("a SID was added") += 1;
        level.id_bytes.extend_from_slice(id.as_bytes());
        if level.id_bytes.len() > u32::MAX as usize {
            return Err(IndexError::Input(
                "item ids of one SID length exceed 4 GiB".into(),
            ));
        }
        level.id_ends.push(level.id_bytes.len() as u32);
        Ok(())
    }

    fn sum(&self, f: impl Fn(&Level) -> usize) -> usize {
        self.levels.iter().map(f).sum()
    }

    fn nodes(&self) -> usize {
        1 + self.sum(|l| l.tokens.len())
    }
}

/// An item id as pushed: its text, or a canonical decimal integer.
#[derive(Clone, Copy)]
enum ItemId<'a> {
    Text(&'a str),
    Integer(u64),
}

impl ItemId<'_> {
    /// Calls `f` with the id's text (an integer spelled out on the stack).
    fn with_text<R>(self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            Self::Text(text) => f(text),
            Self::Integer(v) => {
                let mut buf = [0u8; 20];
                let mut at = buf.len();
                let mut rest = v;
                loop {
                    at -= 1;
                    buf[at] = b'0' + (rest % 10) as u8;
                    rest /= 10;
                    if rest == 0 {
                        break;
                    }
                }
                f(std::str::from_utf8(&buf[at..]).expect("ASCII digits"))
            }
        }
    }
}

impl std::fmt::Display for ItemId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_text(|text| write!(f, "{text:?}"))
    }
}

/// The last item id pushed, kept as it came (an integer is spelled out
/// only when a later id of the same SID is compared with it).
#[derive(Default)]
struct LastId {
    text: String,
    integer: Option<u64>,
}

impl LastId {
    fn set(&mut self, id: ItemId<'_>) {
        match id {
            ItemId::Text(text) => {
                self.integer = None;
                self.text.clear();
                self.text.push_str(text);
            }
            ItemId::Integer(v) => self.integer = Some(v),
        }
    }

    /// How `next` orders against this id, byte-wise as text.
    fn cmp_next(&self, next: ItemId<'_>) -> std::cmp::Ordering {
        let last = match (next, self.integer) {
            (ItemId::Integer(b), Some(a)) => return super::sorted::decimal_order(b, a),
            (_, Some(v)) => ItemId::Integer(v),
            (_, None) => ItemId::Text(&self.text),
        };
        next.with_text(|b| last.with_text(|a| b.as_bytes().cmp(a.as_bytes())))
    }
}

/// The trie file addresses nodes, items (and, in version 1, id bytes) with
/// `u32`: refuse more.
fn check_totals(totals: &[(&str, usize)]) -> Result<(), IndexError> {
    for &(what, n) in totals {
        if n > u32::MAX as usize {
            return Err(IndexError::Input(format!(
                "{n} {what} exceed the index format's limit of {} per version",
                u32::MAX
            )));
        }
    }
    Ok(())
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
    a.level_sid_start = vec![0u64; levels.len() + 2];
    let mut node_base = 1usize;
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
    *a.level_sid_start.last_mut().expect("depth + 2 entries") = sids;
    a.sids = sids;
    a.terminal_rank = Vec::with_capacity(words + 1);
    let mut rank = 0u32;
    for w in &a.terminal_words {
        a.terminal_rank.push(rank);
        rank += w.count_ones();
    }
    a.terminal_rank.push(rank);

    if levels
        .iter()
        .all(|l| l.items_per_sid.iter().all(|&n| n == 1))
    {
        a.flags |= ONE_ITEM_PER_SID;
    } else {
        a.sid_item_start.push(0);
        let mut items = 0u32;
        for l in levels {
            for &n in &l.items_per_sid {
                items += n;
                a.sid_item_start.push(items);
            }
        }
    }
    a.id_offsets.push(0);
    for l in levels {
        let base = a.id_bytes.len() as u32;
        a.id_offsets.extend(l.id_ends.iter().map(|&e| base + e));
        a.id_bytes.extend_from_slice(&l.id_bytes);
    }
    a
}

/// `items.fst`: item id → SID ordinal, keys sorted once.
fn write_items_fst(a: &TrieArrays, path: &Path) -> Result<(), IndexError> {
    let items = a.id_offsets.len() - 1;
    let id = |i: usize| &a.id_bytes[a.id_offsets[i] as usize..a.id_offsets[i + 1] as usize];
    // Sort on (first 8 bytes, item); ties on the prefix fall back to the full id.
    let prefix = |i: usize| {
        let b = id(i);
        let mut p = [0u8; 8];
        let n = b.len().min(8);
        p[..n].copy_from_slice(&b[..n]);
        u64::from_be_bytes(p)
    };
    let mut order: Vec<(u64, u32)> = (0..items)
        .into_par_iter()
        .map(|i| (prefix(i), i as u32))
        .collect();
    order.par_sort_unstable_by(|x, y| {
        x.0.cmp(&y.0)
            .then_with(|| id(x.1 as usize).cmp(id(y.1 as usize)))
    });
    if let Some(w) = order
        .windows(2)
        .find(|w| id(w[0].1 as usize) == id(w[1].1 as usize))
    {
        return Err(IndexError::Input(format!(
            "item {:?} appears with two SIDs",
            String::from_utf8_lossy(id(w[0].1 as usize))
        )));
    }
    // Item ordinal → SID ordinal (items are numbered in SID order).
    let sid_of_item: Vec<u32> = if a.sid_item_start.is_empty() {
        (0..items as u32).collect()
    } else {
        let mut v = vec![0u32; items];
        for (s, w) in a.sid_item_start.windows(2).enumerate() {
            v[w[0] as usize..w[1] as usize].fill(s as u32);
        }
        v
    };
    let file = File::create(path).map_err(|e| IndexError::io(path, e))?;
    let mut b = fst::MapBuilder::new(BufWriter::with_capacity(1 << 20, file))
        .map_err(|e| IndexError::fst_write(path, e))?;
    for &(_, i) in &order {
        b.insert(id(i as usize), sid_of_item[i as usize] as u64)
            .map_err(|e| IndexError::fst_write(path, e))?;
    }
    let file = b
        .into_inner()
        .map_err(|e| IndexError::fst_write(path, e))?
        .into_inner()
        .map_err(|e| IndexError::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| IndexError::io(path, e))
}
