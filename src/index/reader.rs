//! An opened, verified index version and its queries. Every query reads the
//! memory-mapped arrays in place; stepping a beam (`child`, `children`,
//! `is_terminal`) allocates nothing and walks nothing from the root.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::format::{self, Counts, Sections};
use super::manifest::{MANIFEST_FILE, Manifest};
use super::{IndexError, TokenId, sid_key};
use crate::sid::{Layout, Token};

pub const SIDS_FST: &str = "sids.fst";
pub const ITEMS_FST: &str = "items.fst";
pub const TRIE_FILE: &str = "trie.bin";

/// SIDs up to this many tokens are looked up with a key on the stack.
const MAX_STACK_SID: usize = 16;

/// A trie node; `Index::root()` is node 0.
pub type NodeId = u32;

/// One opened version.
pub struct Index {
    dir: PathBuf,
    manifest: Manifest,
    layout: Layout,
    trie: Mmap,
    sections: Sections,
    one_item_per_sid: bool,
    sids: fst::Map<Mmap>,
    items: fst::Map<Mmap>,
    /// The mapped files and their lengths, to notice one changed under us.
    mapped: Vec<(PathBuf, File, u64)>,
}

/// The answer to a valid-prefix query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextTokens<'a> {
    /// The prefix's node, `None` when no SID starts with the prefix.
    pub node: Option<NodeId>,
    /// Token ids that may follow, ascending.
    pub allowed: &'a [TokenId],
    /// The prefix is itself a SID.
    pub complete: bool,
}

/// Maps one index file: the crate's one `unsafe` call (`unsafe_code` is
/// denied everywhere else by `[lints]` in Cargo.toml).
#[allow(unsafe_code)]
fn map(path: &Path, mapped: &mut Vec<(PathBuf, File, u64)>) -> Result<Mmap, IndexError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IndexError::corrupt(path, "missing"),
        _ => IndexError::io(path, e),
    })?;
    // SAFETY: published index files are immutable (written under a temporary
    // name, synced, made read-only, renamed into place, never modified or
    // truncated after), so the mapping cannot change under us; its length
    // was checked against the manifest before mapping. Another process
    // breaking that rule is noticed by `Index::check_unchanged`.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| IndexError::io(path, e))?;
    mapped.push((path.to_owned(), file, map.len() as u64));
    Ok(map)
}

impl Index {
    /// Opens a version directory: O(1) checks of every file's presence and
    /// size, then one full verification (checksums and structure).
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let manifest = Manifest::read(dir)?;
        manifest.check_sizes(dir)?;
        for name in [SIDS_FST, ITEMS_FST, TRIE_FILE] {
            if manifest.entry(name).is_none() {
                return Err(IndexError::corrupt(
                    &dir.join(name),
                    "not listed in the manifest",
                ));
            }
        }
        let trie_path = dir.join(TRIE_FILE);
        let mut mapped = Vec::with_capacity(3);
        let trie = map(&trie_path, &mut mapped)?;
        let (counts, body_crc) =
            format::parse_header(&trie).map_err(|m| IndexError::corrupt(&trie_path, m))?;
        let sections = counts
            .sections()
            .ok_or_else(|| IndexError::corrupt(&trie_path, "counts overflow"))?;
        if sections.file_len != trie.len() {
            return Err(IndexError::corrupt(
                &trie_path,
                format!(
                    "{} bytes, the header's counts need {} (truncated or padded)",
                    trie.len(),
                    sections.file_len
                ),
            ));
        }
        let mut open_fst = |name: &str| -> Result<fst::Map<Mmap>, IndexError> {
            let path = dir.join(name);
            fst::Map::new(map(&path, &mut mapped)?).map_err(|e| IndexError::fst_read(&path, e))
        };
        let sids = open_fst(SIDS_FST)?;
        let items = open_fst(ITEMS_FST)?;
        let index = Self {
            dir: dir.to_owned(),
            layout: manifest.layout(),
            manifest,
            trie,
            sections,
            one_item_per_sid: counts.one_item_per_sid(),
            sids,
            items,
            mapped,
        };
        index.verify(body_crc, &counts)?;
        Ok(index)
    }

    /// Checks that no mapped file changed size since it was opened (another
    /// process truncating a published file would make the next read of the
    /// lost pages kill the process with SIGBUS; a server calls this on every
    /// reload tick and stops serving a version that fails it).
    pub fn check_unchanged(&self) -> Result<(), IndexError> {
        for (path, file, len) in &self.mapped {
            let now = file.metadata().map_err(|e| IndexError::io(path, e))?.len();
            if now != *len {
                return Err(IndexError::corrupt(
                    path,
                    format!(
                        "changed from {len} to {now} bytes while served \
                         (published index files must never be modified)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Full verification: file checksums, FST checksums, trie structure.
    fn verify(&self, body_crc: u32, counts: &Counts) -> Result<(), IndexError> {
        let trie_path = self.dir.join(TRIE_FILE);
        let bad = |m: String| IndexError::corrupt(&trie_path, m);
        if crc32c::crc32c(&self.trie[format::HEADER_LEN..]) != body_crc {
            return Err(bad("body checksum mismatch (corrupt data)".into()));
        }
        for (name, fst) in [
            (SIDS_FST, self.sids.as_fst()),
            (ITEMS_FST, self.items.as_fst()),
        ] {
            fst.verify()
                .map_err(|e| IndexError::fst_read(&self.dir.join(name), e))?;
        }
        for f in &self.manifest.files {
            if f.name == TRIE_FILE || f.name.ends_with(".fst") {
                continue; // checked above through their own checksums
            }
            let path = self.dir.join(&f.name);
            let bytes = std::fs::read(&path).map_err(|e| IndexError::io(&path, e))?;
            if crc32c::crc32c(&bytes) != f.crc32c {
                return Err(IndexError::corrupt(&path, "checksum mismatch"));
            }
        }
        let m = &self.manifest;
        if (counts.nodes, counts.sids, counts.items) != (m.nodes, m.sids, m.items) {
            return Err(bad(format!(
                "counts (nodes, sids, items) = {:?} disagree with the manifest's {:?}",
                (counts.nodes, counts.sids, counts.items),
                (m.nodes, m.sids, m.items)
            )));
        }
        if self.sids.len() as u64 != counts.sids || self.items.len() as u64 != counts.items {
            return Err(bad("FST sizes disagree with the trie".into()));
        }
        // Each item holds at most one token per layer (`layer_stats` sums these).
        for (l, c) in m.layer_counts.iter().enumerate() {
            let total = c.iter().try_fold(0u64, |a, &n| a.checked_add(n));
            if total.is_none_or(|t| t > m.items) {
                return Err(IndexError::corrupt(
                    &self.dir.join(MANIFEST_FILE),
                    format!(
                        "layer {} counts add up to more than the {} items",
                        l + 1,
                        m.items
                    ),
                ));
            }
        }
        self.check_structure(counts).map_err(bad)
    }

    /// Every invariant the queries index by, so that no query can go out of bounds.
    fn check_structure(&self, c: &Counts) -> Result<(), String> {
        let nodes = c.nodes as usize;
        let fc = self.first_child();
        if nodes == 0 || fc[0] != 1 {
            return Err("the root is missing".into());
        }
        if fc.windows(2).any(|w| w[0] > w[1]) || fc[nodes] as usize != nodes {
            return Err("child ranges are not monotone or do not end at the node count".into());
        }
        let tokens = self.node_token();
        // Layer of every token id; layers rise along a path, so a child's
        // layer exceeds its parent's (the root's is 0).
        let layer_of: Vec<u8> = (0..super::TOKEN_ID_LIMIT)
            .map(|id| self.layout.token(id).layer)
            .collect();
        for n in 0..nodes {
            let kids = &tokens[fc[n] as usize..fc[n + 1] as usize];
            if kids.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("children of node {n} are not strictly ascending"));
            }
            if fc[n] as usize <= n {
                return Err(format!("node {n} points to an earlier node"));
            }
            let layer = if n == 0 {
                0
            } else {
                layer_of[tokens[n] as usize]
            };
            if let Some(&bad) = kids.iter().find(|&&t| layer_of[t as usize] <= layer) {
                return Err(format!(
                    "node {n} (layer {layer}) has a child token {} of layer {}: \
                     tokens outside the layout's layer order",
                    self.layout.token(u32::from(bad)),
                    layer_of[bad as usize]
                ));
            }
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

    fn section<T: bytemuck::Pod>(&self, range: (usize, usize)) -> &[T] {
        bytemuck::cast_slice(&self.trie[range.0..range.1])
    }

    fn level_sid_start(&self) -> &[u64] {
        self.section(self.sections.level_sid_start)
    }
    fn first_child(&self) -> &[u32] {
        self.section(self.sections.first_child)
    }
    fn node_token(&self) -> &[TokenId] {
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

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn version(&self) -> u64 {
        self.manifest.catalog_version
    }

    /// Number of distinct SIDs.
    pub fn sid_count(&self) -> u64 {
        self.manifest.sids
    }

    pub fn item_count(&self) -> u64 {
        self.manifest.items
    }

    // ---- decoding (the beam-search hot path) ----

    /// Tokens of the longest SID.
    pub fn max_sid_len(&self) -> usize {
        self.level_sid_start().len().saturating_sub(2)
    }

    /// Token ids are below this (they are stored as `u16`).
    pub fn token_id_limit(&self) -> u32 {
        TokenId::MAX as u32 + 1
    }

    /// One past the largest token id any SID uses (a scan of the trie, O(nodes)).
    pub fn used_token_limit(&self) -> u32 {
        self.node_token()
            .iter()
            .max()
            .map_or(0, |&t| u32::from(t) + 1)
    }

    pub fn root(&self) -> NodeId {
        0
    }

    /// Token ids that may follow `node`, ascending.
    #[inline]
    pub fn children(&self, node: NodeId) -> &[TokenId] {
        let fc = self.first_child();
        let n = node as usize;
        &self.node_token()[fc[n] as usize..fc[n + 1] as usize]
    }

    /// The node reached from `node` by `token`.
    #[inline]
    pub fn child(&self, node: NodeId, token: TokenId) -> Option<NodeId> {
        let fc = self.first_child();
        let start = fc[node as usize];
        let kids = &self.node_token()[start as usize..fc[node as usize + 1] as usize];
        kids.binary_search(&token).ok().map(|i| start + i as u32)
    }

    /// Whether the path to `node` is a complete SID.
    #[inline]
    pub fn is_terminal(&self, node: NodeId) -> bool {
        let n = node as usize;
        self.terminal_words()[n / 64] >> (n % 64) & 1 == 1
    }

    /// Ordinal of the SID ending at `node` (breadth-first order).
    pub fn sid_ordinal(&self, node: NodeId) -> Option<u64> {
        if !self.is_terminal(node) {
            return None;
        }
        let n = node as usize;
        let below = self.terminal_words()[n / 64] & ((1u64 << (n % 64)) - 1);
        Some(self.terminal_rank()[n / 64] as u64 + below.count_ones() as u64)
    }

    /// Items whose SID ends at `node` (none for inner nodes).
    pub fn node_items(&self, node: NodeId) -> impl ExactSizeIterator<Item = &str> + '_ {
        let range = self
            .sid_ordinal(node)
            .map_or(0..0, |s| self.sid_items_range(s));
        range.map(move |i| self.item_id(i))
    }

    fn sid_items_range(&self, sid: u64) -> std::ops::Range<u32> {
        if self.one_item_per_sid {
            return if sid < self.manifest.sids {
                sid as u32..sid as u32 + 1
            } else {
                0..0
            };
        }
        let s = self.sid_item_start();
        let Ok(sid) = usize::try_from(sid) else {
            return 0..0;
        };
        match (s.get(sid), sid.checked_add(1).and_then(|n| s.get(n))) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        }
    }

    fn item_id(&self, item: u32) -> &str {
        let o = self.id_offsets();
        std::str::from_utf8(
            &self.id_bytes()[o[item as usize] as usize..o[item as usize + 1] as usize],
        )
        .unwrap_or_default()
    }

    // ---- token conversion ----

    /// The token id of a token, checked against the layout and 16 bits.
    pub fn token_id(&self, token: Token) -> Result<TokenId, IndexError> {
        super::token_id(&self.layout, token).map_err(IndexError::Query)
    }

    pub fn token(&self, id: TokenId) -> Token {
        self.layout.token(id as u32)
    }

    /// Converts a prefix to token ids, checking the layout and the layer order.
    pub fn token_ids(&self, prefix: &[Token], out: &mut Vec<TokenId>) -> Result<(), IndexError> {
        out.clear();
        for (i, &t) in prefix.iter().enumerate() {
            if i > 0 && t.layer <= prefix[i - 1].layer {
                return Err(IndexError::Query(format!(
                    "token {t} at position {i}: layers must increase along a SID"
                )));
            }
            out.push(self.token_id(t)?);
        }
        Ok(())
    }

    // ---- queries by SID / prefix / item ----

    /// The node of a prefix of token ids, `None` if no SID starts with it.
    pub fn walk(&self, prefix: &[TokenId]) -> Option<NodeId> {
        prefix
            .iter()
            .try_fold(self.root(), |n, &t| self.child(n, t))
    }

    /// Which tokens may follow `prefix`, and whether it is a complete SID.
    pub fn next_tokens(&self, prefix: &[TokenId]) -> NextTokens<'_> {
        match self.walk(prefix) {
            Some(node) => NextTokens {
                node: Some(node),
                allowed: self.children(node),
                complete: self.is_terminal(node),
            },
            None => NextTokens {
                node: None,
                allowed: &[],
                complete: false,
            },
        }
    }

    /// Items with exactly this SID (none if it is not a SID).
    pub fn items(&self, sid: &[TokenId]) -> impl ExactSizeIterator<Item = &str> + '_ {
        let mut short = [0u8; 2 * MAX_STACK_SID];
        let mut long = Vec::new();
        let key: &[u8] = if sid.len() <= MAX_STACK_SID {
            for (k, t) in short.chunks_exact_mut(2).zip(sid) {
                k.copy_from_slice(&t.to_be_bytes());
            }
            &short[..2 * sid.len()]
        } else {
            sid_key(sid, &mut long);
            &long
        };
        let range = self
            .sids
            .get(key)
            .map_or(0..0, |v| self.sid_items_range(self.global_ordinal(key, v)));
        range.map(move |i| self.item_id(i))
    }

    /// The SID ordinal of a `sids.fst` entry: its value counts SIDs of the key's length.
    fn global_ordinal(&self, key: &[u8], value: u64) -> u64 {
        self.level_sid_start()
            .get(key.len() / 2)
            .copied()
            .unwrap_or(0)
            + value
    }

    /// The SID of an item, as token ids.
    pub fn sid(&self, item_id: &str) -> Option<Vec<TokenId>> {
        let mut sid = Vec::with_capacity(4);
        self.sid_into(item_id, &mut sid).then_some(sid)
    }

    /// Writes the SID of an item into `out`; false if the item is unknown.
    pub fn sid_into(&self, item_id: &str, out: &mut Vec<TokenId>) -> bool {
        out.clear();
        let Some(mut node) = self
            .items
            .get(item_id)
            .and_then(|s| self.select_terminal(s))
        else {
            return false;
        };
        while node != self.root() {
            out.push(self.node_token()[node as usize]);
            node = self.parent(node);
        }
        out.reverse();
        true
    }

    /// The parent of a non-root node: the node whose child range holds it.
    fn parent(&self, node: NodeId) -> NodeId {
        let fc = self.first_child();
        (fc.partition_point(|&c| c <= node) - 1) as NodeId
    }

    /// The terminal node of SID ordinal `sid`.
    fn select_terminal(&self, sid: u64) -> Option<NodeId> {
        let rank = self.terminal_rank();
        let w = rank.partition_point(|&r| r as u64 <= sid).checked_sub(1)?;
        let mut bits = *self.terminal_words().get(w)?;
        for _ in 0..(sid - rank[w] as u64) {
            bits &= bits - 1;
        }
        (bits != 0).then(|| (w * 64) as NodeId + bits.trailing_zeros())
    }

    /// Up to `limit` `(SID, item)` pairs whose SID starts with `prefix`, in SID key order.
    pub fn prefix_items(&self, prefix: &[TokenId], limit: usize) -> Vec<(Vec<TokenId>, &str)> {
        use fst::{IntoStreamer, Streamer};
        let mut key = Vec::new();
        sid_key(prefix, &mut key);
        let mut out = Vec::new();
        let mut stream = self.sids.range().ge(&key).into_stream();
        while let Some((k, v)) = stream.next() {
            if !k.starts_with(&key) || out.len() >= limit {
                break;
            }
            let sid: Vec<TokenId> = k
                .chunks_exact(2)
                .map(|b| TokenId::from_be_bytes([b[0], b[1]]))
                .collect();
            for i in self.sid_items_range(self.global_ordinal(k, v)) {
                if out.len() >= limit {
                    break;
                }
                out.push((sid.clone(), self.item_id(i)));
            }
        }
        out
    }

    /// Every `(SID, item)` pair in SID key order, then item id order.
    pub fn entries(&self) -> impl Iterator<Item = (Vec<TokenId>, &str)> + '_ {
        let mut stream = fst::IntoStreamer::into_stream(&self.sids);
        let mut batch: Vec<(Vec<TokenId>, &str)> = Vec::new();
        std::iter::from_fn(move || {
            use fst::Streamer;
            while batch.is_empty() {
                let (k, v) = stream.next()?;
                let sid: Vec<TokenId> = k
                    .chunks_exact(2)
                    .map(|b| TokenId::from_be_bytes([b[0], b[1]]))
                    .collect();
                let range = self.sid_items_range(self.global_ordinal(k, v));
                batch.extend(range.rev().map(|i| (sid.clone(), self.item_id(i))));
            }
            batch.pop()
        })
    }

    /// Converts token ids back to tokens.
    pub fn tokens(&self, ids: &[TokenId]) -> Vec<Token> {
        ids.iter().map(|&t| self.token(t)).collect()
    }
}
