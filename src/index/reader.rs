//! An opened, verified index version and its queries, over either format
//! version of `trie.bin` ([`super::v1`], [`super::v2`]). Every query reads
//! the memory-mapped arrays in place; stepping a beam (`child`, `children`,
//! `is_terminal`) allocates nothing and walks nothing from the root.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::format;
use super::manifest::{MANIFEST_FILE, Manifest};
use super::v1::V1;
use super::v2::Compact;
use super::wide::WideNodes;
use super::{IndexError, TokenId};
use crate::sid::{Layout, Token};

pub const SIDS_FST: &str = "sids.fst";
pub const ITEMS_FST: &str = "items.fst";
pub const TRIE_FILE: &str = "trie.bin";

/// A trie node; `Index::root()` is node 0.
pub type NodeId = u32;

/// One opened version.
pub struct Index {
    dir: PathBuf,
    manifest: Manifest,
    layout: Layout,
    body: Body,
    /// Bitmaps of the wide nodes, for moves.
    wide: WideNodes,
    /// The mapped files and their lengths, to notice one changed under us.
    mapped: Vec<(PathBuf, File, u64)>,
}

/// The trie file of either format version. One per opened version: the
/// size difference costs nothing, and a box would add a pointer chase to
/// every beam step.
#[allow(clippy::large_enum_variant)]
enum Body {
    V1(V1),
    V2(Compact),
}

/// Calls the same method on either format's reader.
macro_rules! body {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.body {
            Body::V1(b) => b.$method($($arg),*),
            Body::V2(b) => b.$method($($arg),*),
        }
    };
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

/// The children of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Children<'a> {
    first: NodeId,
    tokens: &'a [TokenId],
}

impl<'a> Children<'a> {
    /// The children `a..b` of a node, from the tokens of every node.
    #[inline]
    fn of(tokens: &'a [TokenId], (a, b): (u32, u32)) -> Self {
        Self {
            first: a,
            tokens: &tokens[a as usize..b as usize],
        }
    }

    /// Token ids of the children, ascending.
    pub fn tokens(&self) -> &'a [TokenId] {
        self.tokens
    }

    /// The child reached by `tokens()[i]`; `None` past them.
    #[inline]
    pub fn child_at(&self, i: usize) -> Option<NodeId> {
        (i < self.tokens.len()).then(|| self.first + i as NodeId)
    }

    /// The child reached by `token`.
    #[inline]
    pub fn child(&self, token: TokenId) -> Option<NodeId> {
        let (&lo, &hi) = (self.tokens.first()?, self.tokens.last()?);
        // Every token of lo..=hi present (a full codebook under the node):
        // the child is found by subtraction.
        let i = if usize::from(hi - lo) + 1 == self.tokens.len() {
            (lo..=hi)
                .contains(&token)
                .then(|| usize::from(token - lo))?
        } else {
            self.tokens.binary_search(&token).ok()?
        };
        Some(self.first + i as NodeId)
    }
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
        let v1 = manifest.format_version == format::VERSION;
        let required: &[&str] = if v1 {
            &[SIDS_FST, ITEMS_FST, TRIE_FILE]
        } else {
            &[TRIE_FILE]
        };
        for name in required {
            if manifest.entry(name).is_none() {
                return Err(IndexError::corrupt(
                    &dir.join(name),
                    "not listed in the manifest",
                ));
            }
        }
        let trie_path = dir.join(TRIE_FILE);
        let bad = |m: String| IndexError::corrupt(&trie_path, m);
        let mut mapped = Vec::with_capacity(3);
        let trie = map(&trie_path, &mut mapped)?;
        let header = format::parse_header(&trie).map_err(bad)?;
        if header.version != manifest.format_version {
            return Err(bad(format!(
                "format version {}, the manifest records {}",
                header.version, manifest.format_version
            )));
        }
        let layout = manifest.layout();
        // Layer of every token id: layers rise along a path.
        let layer_of: Vec<u8> = (0..super::TOKEN_ID_LIMIT)
            .map(|id| layout.token(id).layer)
            .collect();
        let layer = |t: TokenId| layer_of[t as usize];
        let body = if v1 {
            for (name, len) in [
                (SIDS_FST, header.counts.sids),
                (ITEMS_FST, header.counts.items),
            ] {
                let path = dir.join(name);
                let fst = fst::raw::Fst::new(map(&path, &mut mapped)?)
                    .map_err(|e| IndexError::fst_read(&path, e))?;
                fst.verify().map_err(|e| IndexError::fst_read(&path, e))?;
                if fst.len() as u64 != len {
                    return Err(IndexError::corrupt(&path, "size disagrees with the trie"));
                }
            }
            Body::V1(V1::open(trie, header.counts, header.body_crc, layer).map_err(bad)?)
        } else {
            Body::V2(Compact::open(trie, header.counts, header.body_crc, layer).map_err(bad)?)
        };
        let mut index = Self {
            dir: dir.to_owned(),
            layout,
            manifest,
            body,
            wide: WideNodes::default(),
            mapped,
        };
        index.wide = WideNodes::build(header.counts.nodes, |n| index.children(n));
        tracing::debug!(
            dir = %dir.display(),
            wide_nodes = index.wide.nodes(),
            wide_heap_bytes = index.wide.heap_bytes(),
            "opened"
        );
        index.verify_manifest()?;
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

    /// The manifest against the trie, and the checksums of the other files.
    fn verify_manifest(&self) -> Result<(), IndexError> {
        for f in &self.manifest.files {
            if f.name == TRIE_FILE || f.name.ends_with(".fst") {
                continue; // checked through their own checksums
            }
            let path = self.dir.join(&f.name);
            let bytes = std::fs::read(&path).map_err(|e| IndexError::io(&path, e))?;
            if crc32c::crc32c(&bytes) != f.crc32c {
                return Err(IndexError::corrupt(&path, "checksum mismatch"));
            }
        }
        let m = &self.manifest;
        let c = body!(self.counts());
        if (c.nodes, c.sids, c.items) != (m.nodes, m.sids, m.items) {
            return Err(IndexError::corrupt(
                &self.dir.join(TRIE_FILE),
                format!(
                    "counts (nodes, sids, items) = {:?} disagree with the manifest's {:?}",
                    (c.nodes, c.sids, c.items),
                    (m.nodes, m.sids, m.items)
                ),
            ));
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
        Ok(())
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

    /// The format version of this version's files (1 or 2).
    pub fn format_version(&self) -> u32 {
        self.manifest.format_version
    }

    /// Bytes of each part of `trie.bin`, then of the other files of the version.
    pub fn section_bytes(&self) -> Vec<(String, u64)> {
        let mut parts: Vec<(String, u64)> = body!(self.section_bytes())
            .into_iter()
            .map(|(name, b)| (format!("{TRIE_FILE}: {name}"), b))
            .collect();
        parts.extend(
            self.manifest
                .files
                .iter()
                .filter(|f| f.name != TRIE_FILE)
                .map(|f| (f.name.clone(), f.bytes)),
        );
        parts
    }

    /// Heap bytes this version holds besides its mapped files (rank/select
    /// structures of v2, the sorted item map of v1).
    pub fn heap_bytes(&self) -> u64 {
        body!(self.heap_bytes()) + self.wide.heap_bytes()
    }

    /// Nodes whose moves are answered from a bitmap ([`super::wide`]).
    pub fn wide_nodes(&self) -> usize {
        self.wide.nodes()
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
        body!(self.level_sid_start()).len().saturating_sub(2)
    }

    /// Token ids are below this (they are stored as `u16`).
    pub fn token_id_limit(&self) -> u32 {
        TokenId::MAX as u32 + 1
    }

    /// One past the largest token id any SID uses (a scan of the trie, O(nodes)).
    pub fn used_token_limit(&self) -> u32 {
        self.node_tokens()
            .iter()
            .max()
            .map_or(0, |&t| u32::from(t) + 1)
    }

    fn node_tokens(&self) -> &[TokenId] {
        body!(self.node_tokens())
    }

    pub fn root(&self) -> NodeId {
        0
    }

    /// Token ids that may follow `node`, ascending.
    #[inline]
    pub fn children(&self, node: NodeId) -> &[TokenId] {
        self.children_of(node).tokens
    }

    /// The node reached from `node` by `token`.
    #[inline]
    pub fn child(&self, node: NodeId, token: TokenId) -> Option<NodeId> {
        self.child_in(node, &self.children_of(node), token)
    }

    /// The node reached from `node`, whose children are `kids` (from
    /// [`Self::children_of_all`]), by `token`: a wide node's from its
    /// bitmap ([`super::wide`]), any other's by a search among `kids`.
    #[inline]
    pub fn child_in(&self, node: NodeId, kids: &Children, token: TokenId) -> Option<NodeId> {
        match self.wide.row(node) {
            // Kids of another node (a caller's slip) give `None`, not a stray node.
            Some(w) => kids.child_at(w.position(token)?),
            None => kids.child(token),
        }
    }

    /// The children of `node`, with one dispatch on the format.
    #[inline]
    fn children_of(&self, node: NodeId) -> Children<'_> {
        match &self.body {
            Body::V1(v) => Children::of(v.node_tokens(), v.child_range(node)),
            Body::V2(v) => Children::of(v.node_tokens(), v.child_range(node)),
        }
    }

    /// The children of every node of `nodes`, in order, with the memory
    /// loads of all of them overlapped — the index's share of a beam step.
    pub fn children_of_all<'a>(&'a self, nodes: &[NodeId], out: &mut Vec<Children<'a>>) {
        out.clear();
        let tokens = self.node_tokens();
        let mut push = |range| out.push(Children::of(tokens, range));
        match &self.body {
            Body::V1(v) => nodes.iter().for_each(|&n| push(v.child_range(n))),
            Body::V2(v) => v.child_ranges(nodes, push),
        }
        let touched = out
            .iter()
            .fold(0u16, |acc, c| acc ^ c.tokens.first().copied().unwrap_or(0));
        std::hint::black_box(touched);
    }

    /// Whether the path to `node` is a complete SID.
    #[inline]
    pub fn is_terminal(&self, node: NodeId) -> bool {
        body!(self.is_terminal(node))
    }

    /// Ordinal of the SID ending at `node` (breadth-first order).
    pub fn sid_ordinal(&self, node: NodeId) -> Option<u64> {
        body!(self.sid_ordinal(node))
    }

    /// Items whose SID ends at `node` (none for inner nodes), in id order.
    pub fn node_items(&self, node: NodeId) -> impl ExactSizeIterator<Item = Cow<'_, str>> + '_ {
        let range = self
            .sid_ordinal(node)
            .map_or(0..0, |s| body!(self.sid_positions(s)));
        self.item_ids(range)
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
    pub fn items(&self, sid: &[TokenId]) -> impl ExactSizeIterator<Item = Cow<'_, str>> + '_ {
        let node = self.walk(sid).filter(|_| !sid.is_empty());
        let range = node
            .and_then(|n| self.sid_ordinal(n))
            .map_or(0..0, |s| body!(self.sid_positions(s)));
        self.item_ids(range)
    }

    /// The ids of the items at `positions` (items by SID, then id).
    fn item_ids(
        &self,
        positions: std::ops::Range<u64>,
    ) -> impl ExactSizeIterator<Item = Cow<'_, str>> + '_ {
        (positions.start as usize..positions.end as usize)
            .map(move |p| body!(self.item_id(p as u64)))
    }

    /// The SID of an item, as token ids.
    pub fn sid(&self, item_id: &str) -> Option<Vec<TokenId>> {
        let mut sid = Vec::with_capacity(4);
        self.sid_into(item_id, &mut sid).then_some(sid)
    }

    /// Writes the SID of an item into `out`; false if the item is unknown.
    pub fn sid_into(&self, item_id: &str, out: &mut Vec<TokenId>) -> bool {
        out.clear();
        let Some(mut node) =
            body!(self.sid_of_item(item_id)).and_then(|s| body!(self.select_terminal(s)))
        else {
            return false;
        };
        let tokens = self.node_tokens();
        while node != self.root() {
            out.push(tokens[node as usize]);
            node = body!(self.parent(node));
        }
        out.reverse();
        true
    }

    /// Up to `limit` `(SID, item)` pairs whose SID starts with `prefix`, in
    /// SID order (token ids lexicographically, a prefix before its extensions).
    pub fn prefix_items(
        &self,
        prefix: &[TokenId],
        limit: usize,
    ) -> Vec<(Vec<TokenId>, Cow<'_, str>)> {
        match self.walk(prefix) {
            Some(node) => self.entries_under(node, prefix).take(limit).collect(),
            None => Vec::new(),
        }
    }

    /// Every `(SID, item)` pair in SID order, then item id order.
    pub fn entries(&self) -> impl Iterator<Item = (Vec<TokenId>, Cow<'_, str>)> + '_ {
        self.entries_under(self.root(), &[])
    }

    /// The `(SID, item)` pairs of the subtree of `node`, whose path is `path`.
    fn entries_under(
        &self,
        node: NodeId,
        path: &[TokenId],
    ) -> impl Iterator<Item = (Vec<TokenId>, Cow<'_, str>)> + '_ {
        self.sids_under(node, path).flat_map(move |(sid, n)| {
            self.node_items(n)
                .map(move |id| (sid.clone(), id))
                .collect::<Vec<_>>()
        })
    }

    /// SIDs of the subtree of `node` (path `path`) in pre-order, children ascending.
    fn sids_under(
        &self,
        node: NodeId,
        path: &[TokenId],
    ) -> impl Iterator<Item = (Vec<TokenId>, NodeId)> + '_ {
        let mut path = path.to_vec();
        let mut first = self.is_terminal(node).then_some(node);
        let mut frames = vec![body!(self.child_range(node))];
        let tokens = self.node_tokens();
        std::iter::from_fn(move || {
            if let Some(n) = first.take() {
                return Some((path.clone(), n));
            }
            loop {
                let top = frames.last_mut()?;
                if top.0 == top.1 {
                    frames.pop();
                    if !frames.is_empty() {
                        path.pop();
                    }
                    continue;
                }
                let c = top.0;
                top.0 += 1;
                path.push(tokens[c as usize]);
                frames.push(body!(self.child_range(c)));
                if self.is_terminal(c) {
                    return Some((path.clone(), c));
                }
            }
        })
    }

    /// Converts token ids back to tokens.
    pub fn tokens(&self, ids: &[TokenId]) -> Vec<Token> {
        ids.iter().map(|&t| self.token(t)).collect()
    }
}
