//! Bodies of the sidx fuzz targets, one `pub fn` per target in
//! `fuzz_targets/` (each target file is a one-liner calling it).
//!
//! Every target states the same contract: whatever the input, the library
//! returns `Ok` or `Err` — it never panics, aborts, overflows, reads out of
//! bounds (AddressSanitizer) or allocates more than the input justifies.
//! Where a result can be checked cheaply it is (round trips, lookups).
//!
//! Scratch indexes go to `$SIDX_FUZZ_TMPDIR`, else `/dev/shm` (tmpfs: the
//! index writer's fsyncs cost nothing there), else the system temp dir.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use sidx::generate::ValidRequest;
use sidx::generate::{GeneratorLimits, History, Sidecar};
use sidx::index::format;
use sidx::index::{Index, IndexStore, Manifest, TokenId, build_from_table};
use sidx::proto::v1 as pb;
use sidx::server::ServerConfig;
use sidx::server::validate;
use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable, Token, resolve_collisions};

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// The global allocator, recording the largest single request while armed
/// (the `npy` target arms it to bound allocations by the input size).
struct Tracking;

static TRACK: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Runs `f`, returning the largest single allocation it made.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    TRACK.store(true, Ordering::Relaxed);
    let r = f();
    TRACK.store(false, Ordering::Relaxed);
    (r, LARGEST.load(Ordering::Relaxed))
}

/// What the inputs reached, for judging a corpus: with
/// `SIDX_FUZZ_STATS=FILE`, every input rewrites FILE with the counts so far
/// (e.g. replay a corpus with `-runs=0`). Off (and free) otherwise.
#[derive(Clone, Copy)]
enum Reached {
    SidParsed,
    SidBuilt,
    NpyRead,
    SidecarParsed,
    ConfigParsed,
    IndexOpened,
    IndexRefused,
    IndexOpenedDamaged,
    NextTokensValid,
    LookupValid,
    UpdateValid,
    UpdateApplied,
    GenerateValid,
    Prepared,
}

const REACHED: [&str; 14] = [
    "sid_parsed",
    "sid_built",
    "npy_read",
    "sidecar_parsed",
    "config_parsed",
    "index_opened",
    "index_refused",
    "index_opened_damaged",
    "next_tokens_valid",
    "lookup_valid",
    "update_valid",
    "update_applied",
    "generate_valid",
    "prepared",
];

static COUNTS: [AtomicUsize; 15] = [const { AtomicUsize::new(0) }; 15];

fn stats_file() -> Option<&'static Path> {
    static F: OnceLock<Option<PathBuf>> = OnceLock::new();
    F.get_or_init(|| std::env::var_os("SIDX_FUZZ_STATS").map(PathBuf::from))
        .as_deref()
}

fn reached(r: Reached) {
    if stats_file().is_some() {
        COUNTS[r as usize + 1].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one input when its run ends, however it returns (and writes the
/// stats file, when asked for).
struct Done;

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(path) = stats_file() {
            let n = COUNTS[0].fetch_add(1, Ordering::Relaxed) + 1;
            let mut text = format!("inputs {n}\n");
            for (i, name) in REACHED.iter().enumerate() {
                let c = COUNTS[i + 1].load(Ordering::Relaxed);
                text.push_str(&format!("{name} {c}\n"));
            }
            let _ = std::fs::write(path, text);
        }
    }
}

fn tmp_base() -> PathBuf {
    if let Some(d) = std::env::var_os("SIDX_FUZZ_TMPDIR") {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        return shm.to_owned();
    }
    std::env::temp_dir()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sidx-fuzz-")
        .tempdir_in(tmp_base())
        .expect("create a scratch directory")
}

/// Every file under `root` (relative path, bytes), except the writer's LOCK.
fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.file_name().is_some_and(|n| n != "LOCK") {
                let rel = p.strip_prefix(root).expect("under root").to_owned();
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Writes a snapshot into `root` as fresh, writable files.
fn restore(root: &Path, files: &[(PathBuf, Vec<u8>)]) {
    for (rel, bytes) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write");
    }
}

fn token_ids(layout: &Layout, sid: &[Token]) -> Vec<TokenId> {
    sid.iter()
        .map(|&t| sidx::index::token_id(layout, t).expect("token fits"))
        .collect()
}

/// Runs every query of an opened index. With `table` (the index was just
/// built from it, unmodified) the answers are also checked against it.
pub fn exercise_index(index: &Index, table: Option<&SidTable>) {
    index
        .check_unchanged()
        .expect("nothing changed the files since open");
    let max_len = index.max_sid_len();
    let _ = index.used_token_limit();
    let _ = sidx::catalog::layer_stats(index);
    let _ = (index.version(), index.sid_count(), index.item_count());
    let _ = index.token_id_limit();

    // Walk the trie depth-first from the root (bounded).
    let mut stack: Vec<(u32, Vec<TokenId>)> = vec![(index.root(), Vec::new())];
    let mut visited = 0usize;
    let mut terminals = 0u64;
    while let Some((node, prefix)) = stack.pop() {
        visited += 1;
        if visited > 5000 {
            break;
        }
        let nt = index.next_tokens(&prefix);
        assert_eq!(nt.node, Some(node), "next_tokens reaches the walked node");
        assert_eq!(nt.allowed, index.children(node));
        assert_eq!(nt.complete, index.is_terminal(node));
        assert_eq!(index.walk(&prefix), Some(node));
        let node_items: Vec<Cow<str>> = index.node_items(node).collect();
        let by_sid: Vec<Cow<str>> = index.items(&prefix).collect();
        let _ = index.sid_ordinal(node);
        if nt.complete {
            terminals += 1;
        }
        let tokens = index.tokens(&prefix);
        let mut ids = Vec::new();
        let _ = index.token_ids(&tokens, &mut ids);
        let _ = index.prefix_items(&prefix, 16);
        if table.is_some() {
            assert_eq!(ids, prefix, "tokens convert back to the same ids");
            assert_eq!(nt.complete, !node_items.is_empty());
            assert_eq!(node_items, by_sid, "node items equal the SID's items");
            for id in &node_items {
                assert_eq!(index.sid(id).as_deref(), Some(&prefix[..]));
            }
            assert!(prefix.len() <= max_len);
        }
        let _ = index.child(node, TokenId::MAX);
        for &t in nt.allowed.iter().rev() {
            let child = index.child(node, t).expect("an allowed token has a child");
            let mut p = prefix.clone();
            p.push(t);
            stack.push((child, p));
        }
    }
    let entries: Vec<(Vec<TokenId>, Cow<str>)> = index.entries().take(100_000).collect();
    let first = index.prefix_items(&[], 1000);
    for (sid, id) in entries.iter().take(2000) {
        let _ = index.sid(id);
        let _ = index.items(sid).count();
    }
    let _ = index.sid("");
    let _ = index.sid("\u{0}no such item");
    let _ = index.items(&[]).count();
    let long: Vec<TokenId> = (0..40).collect();
    let _ = index.items(&long).count();
    let _ = index.next_tokens(&long);

    if let Some(table) = table {
        assert!(visited > 5000 || terminals == index.sid_count());
        assert_eq!(entries.len(), table.len(), "entries lists every item");
        assert_eq!(index.item_count(), table.len() as u64);
        assert_eq!(first.len(), table.len().min(1000));
        assert!(
            entries.windows(2).all(|w| w[0] <= w[1]),
            "entries are sorted"
        );
        let layout = table.layout();
        for (id, sid) in table.iter() {
            let ids = token_ids(&layout, sid);
            assert_eq!(index.sid(id).as_deref(), Some(&ids[..]), "item {id:?}");
            assert!(index.items(&ids).any(|i| i == id), "item {id:?} by SID");
        }
    }
}

// ---------------------------------------------------------------------------
// sid_file
// ---------------------------------------------------------------------------

/// `SidTable::parse` of arbitrary bytes; a table it accepts writes back to
/// an equal table, and builds into an index answering for every item.
pub fn sid_file(data: &[u8]) {
    let _count = Done;
    let Ok(table) = SidTable::parse(data, Path::new("fuzz.tsv")) else {
        return;
    };
    reached(Reached::SidParsed);
    let mut out = Vec::new();
    table.write_to(&mut out).expect("write to a Vec");
    let again = match SidTable::parse(&out[..], Path::new("fuzz.tsv")) {
        Ok(t) => t,
        Err(e) => panic!(
            "a written table does not parse again: {e}\n{}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(table, again, "write_to + parse round trip");

    let dir = tempdir();
    let store = IndexStore::new(dir.path());
    if build_from_table(&store, &table, "fuzz", None).is_ok() {
        reached(Reached::SidBuilt);
        let index = store.open_current().expect("a fresh build opens");
        exercise_index(&index, Some(&table));
    }
}

// ---------------------------------------------------------------------------
// npy
// ---------------------------------------------------------------------------

/// `npy::read_from` of arbitrary bytes: never panics, never allocates more
/// than the input justifies; what it reads writes back to the same array.
pub fn npy(data: &[u8]) {
    let _count = Done;
    let (read, largest) =
        largest_allocation(|| sidx::npy::read_from(data, data.len() as u64, Path::new("fuzz.npy")));
    let justified = 64 * data.len() + (1 << 16);
    assert!(
        largest <= justified,
        "read_from of {} bytes allocated {largest} bytes at once",
        data.len()
    );
    let Ok(a) = read else { return };
    reached(Reached::NpyRead);
    assert_eq!(a.shape.iter().product::<usize>(), a.data.len());
    assert!(a.data.len() * 4 <= data.len());
    let _ = a.dims2();
    // A version 1.0 header holds 64 KiB; shapes that long are another matter.
    if a.shape.len() <= 64 {
        let mut out = Vec::new();
        sidx::npy::write_to(&mut out, &a.shape, &a.data).expect("write to a Vec");
        let b = sidx::npy::read_from(&out[..], out.len() as u64, Path::new("fuzz.npy"))
            .expect("written array reads back");
        assert_eq!(a.shape, b.shape);
        assert!(
            a.data
                .iter()
                .zip(&b.data)
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
    }
}

// ---------------------------------------------------------------------------
// sidecar
// ---------------------------------------------------------------------------

/// Generator sidecar JSON and server TOML config of arbitrary text.
pub fn sidecar(data: &[u8]) {
    let _count = Done;
    let text = String::from_utf8_lossy(data);
    if let Ok(s) = Sidecar::parse(&text) {
        reached(Reached::SidecarParsed);
        let json = serde_json::to_string(&s).expect("sidecar serializes");
        assert_eq!(Sidecar::parse(&json).as_ref(), Ok(&s), "sidecar round trip");
        // Prompts of a few histories derived from the input.
        let history: Vec<Vec<TokenId>> = data
            .chunks(7)
            .map(|c| c.iter().map(|&b| TokenId::from(b)).collect())
            .collect();
        let max_sid_len = data.len() % 9;
        let p = s.prompt(history.iter().map(Vec::as_slice), max_sid_len);
        let budget = (s.max_positions as usize).saturating_sub(2 + max_sid_len);
        assert!(
            p.len() <= 1 + budget,
            "prompt of {} > budget {budget}",
            p.len()
        );
        if let Some(bos) = s.bos_id {
            assert_eq!(p[0], i64::from(bos));
        }
        let _ = s.vocab_id(TokenId::MAX);
    }
    if let Ok(c) = ServerConfig::from_toml(&text) {
        reached(Reached::ConfigParsed);
        let _ = c.validate();
        let _ = c.request_timeout();
    }
}

// ---------------------------------------------------------------------------
// index_open
// ---------------------------------------------------------------------------

/// One item of the small index an `index_open` input builds.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemSpec {
    /// Codes of layers 1..=3 (mod 8).
    pub codes: [u8; 3],
    /// Bits 0..=2: which quantizer layers the SID has; bit 3: a disambiguation token.
    pub mask: u8,
    /// Disambiguation code (mod 16).
    pub dis: u8,
    /// An id of its own (used when non-empty, free of tabs / line breaks and unique).
    pub name: Option<String>,
}

/// A file of the version (or the root's `CURRENT`).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSel {
    Manifest,
    SidsFst,
    ItemsFst,
    Trie,
    Current,
}

impl FileSel {
    fn path(self, root: &Path) -> PathBuf {
        let v = root.join("versions").join("v00000001");
        match self {
            FileSel::Manifest => v.join("manifest.json"),
            FileSel::SidsFst => v.join("sids.fst"),
            FileSel::ItemsFst => v.join("items.fst"),
            FileSel::Trie => v.join("trie.bin"),
            FileSel::Current => root.join("CURRENT"),
        }
    }
}

/// A field of the trie header.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TrieField {
    Flags,
    Nodes,
    Sids,
    Items,
    IdBytes,
    Depth,
    Version,
}

/// A section of the trie body.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TrieSection {
    LevelSidStart,
    FirstChild,
    NodeToken,
    TerminalWords,
    TerminalRank,
    SidItemStart,
    IdOffsets,
    IdBytes,
}

/// A change to one file's bytes.
#[derive(Arbitrary, Debug)]
pub enum Mutation {
    FlipBit {
        file: FileSel,
        offset: u16,
        bit: u8,
    },
    Overwrite {
        file: FileSel,
        offset: u16,
        bytes: Vec<u8>,
    },
    SetU32 {
        file: FileSel,
        offset: u16,
        value: u32,
    },
    SetU64 {
        file: FileSel,
        offset: u16,
        value: u64,
    },
    /// A header field of `trie.bin` (counts of the sections).
    TrieHeader {
        field: TrieField,
        value: u64,
    },
    /// Element `index` of a body section of `trie.bin`, as the header lays it out.
    TrieElement {
        section: TrieSection,
        index: u16,
        value: u64,
    },
    Truncate {
        file: FileSel,
        len: u16,
    },
    Append {
        file: FileSel,
        bytes: Vec<u8>,
    },
    Remove {
        file: FileSel,
    },
    SetCurrent {
        current: u8,
        published: Option<u8>,
    },
    /// An edit of the manifest's JSON; the checksum is recomputed.
    Manifest(ManifestEdit),
}

/// An edit of `manifest.json` (applied to the parsed manifest, then written
/// with a recomputed checksum, so that it gets past the checksum check).
#[derive(Arbitrary, Debug)]
pub enum ManifestEdit {
    CodebookSizes(Vec<u32>),
    Collisions(bool),
    Sids(u64),
    Items(u64),
    Nodes(u64),
    LayerCounts(Vec<Vec<u64>>),
    LayerCount {
        layer: u8,
        code: u16,
        value: u64,
    },
    CatalogVersion(u64),
    HasCodebooks(bool),
    FileBytes {
        entry: u8,
        bytes: u64,
    },
    FileName {
        entry: u8,
        name: String,
    },
    RemoveEntry(u8),
    AddEntry {
        name: String,
        bytes: u64,
        crc32c: u32,
    },
    /// An entry naming something outside the version directory.
    OutsideEntry {
        name: OutsideName,
        bytes: u8,
    },
    Format(String),
    FormatVersion(u32),
}

/// Names a manifest entry should never be able to reach.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum OutsideName {
    DevZero,
    DevNull,
    ProcStatus,
    ParentCurrent,
    Dot,
    DotDot,
    Empty,
    Subdir,
}

impl OutsideName {
    fn name(self) -> &'static str {
        match self {
            OutsideName::DevZero => "/dev/zero",
            OutsideName::DevNull => "/dev/null",
            OutsideName::ProcStatus => "/proc/self/status",
            OutsideName::ParentCurrent => "../../CURRENT",
            OutsideName::Dot => ".",
            OutsideName::DotDot => "..",
            OutsideName::Empty => "",
            OutsideName::Subdir => "sub/trie.bin",
        }
    }
}

/// Checksums recomputed after the mutations, to get past them.
#[derive(Arbitrary, Debug, Default)]
pub struct Fixups {
    /// Body and header CRC32C of `trie.bin`.
    pub trie: bool,
    /// The masked CRC32C trailer of both FSTs (format 1).
    pub fst: bool,
    /// The manifest's file sizes and CRCs, and its own checksum.
    pub manifest: bool,
}

/// Input of `index_open`: an index to build, and how to damage it.
#[derive(Arbitrary, Debug)]
pub struct IndexOpenInput {
    pub share: bool,
    pub items: Vec<ItemSpec>,
    pub mutations: Vec<Mutation>,
    pub fixups: Fixups,
    /// After a successful open: truncate this mapped file, which
    /// `check_unchanged` must then notice.
    pub truncate_after_open: Option<FileSel>,
    /// Build in index format 2 (else 1). Last, so that inputs saved before
    /// it existed still decode (as format 1, which they were built in).
    pub v2: bool,
    /// Name unnamed items by their number (integer ids) instead of `item-N`.
    pub integer_ids: bool,
}

const LAYOUT: [u32; 3] = [8, 8, 8];

fn spec_sid(s: &ItemSpec) -> Vec<Token> {
    let mut sid = Vec::new();
    for l in 0..3 {
        if s.mask & (1 << l) != 0 {
            sid.push(Token::new(l as u8 + 1, u32::from(s.codes[l]) % LAYOUT[l]));
        }
    }
    if sid.is_empty() {
        sid.push(Token::new(1, u32::from(s.codes[0]) % LAYOUT[0]));
    }
    if s.mask & 8 != 0 {
        sid.push(Token::new(4, u32::from(s.dis) % 16));
    }
    sid
}

/// The table an input describes (SIDs unique in disambiguate mode).
fn spec_table(share: bool, integer_ids: bool, items: &[ItemSpec]) -> SidTable {
    let layout = Layout::new(LAYOUT.to_vec()).expect("valid layout");
    let mode = if share {
        CollisionMode::Share
    } else {
        CollisionMode::Disambiguate
    };
    let mut table = SidTable::new(SidHeader::new(&layout, mode));
    let mut ids = HashSet::new();
    let mut sids: HashSet<Vec<Token>> = HashSet::new();
    for (k, s) in items.iter().take(48).enumerate() {
        let id = match &s.name {
            Some(n)
                if !n.is_empty()
                    && n.len() <= 64
                    && !n.contains(['\t', '\n', '\r'])
                    && !ids.contains(n.as_str()) =>
            {
                n.clone()
            }
            _ if integer_ids => k.to_string(),
            _ => format!("item-{k}"),
        };
        if !ids.insert(id.clone()) {
            continue;
        }
        let mut sid = spec_sid(s);
        if !share {
            // A taken SID gets the first free disambiguation code instead.
            let mut code = 0;
            while sids.contains(&sid) {
                if sid.last().is_some_and(|t| t.layer == 4) {
                    sid.pop();
                }
                sid.push(Token::new(4, code));
                code += 1;
            }
            sids.insert(sid.clone());
        }
        table.push(id, &sid);
    }
    if table.is_empty() {
        table.push("only", &[Token::new(1, 0)]);
    }
    table
}

type Snapshot = Vec<(PathBuf, Vec<u8>)>;

/// Built indexes by their table and format: building costs more than the rest of a run.
fn built(table: &SidTable, format_version: u32) -> Snapshot {
    static CACHE: OnceLock<Mutex<HashMap<String, Snapshot>>> = OnceLock::new();
    let mut key = format!("format {format_version}\n").into_bytes();
    table.write_to(&mut key).expect("write to a Vec");
    let key = String::from_utf8(key).expect("utf-8");
    let cache = CACHE.get_or_init(Default::default);
    if let Some(s) = cache.lock().expect("cache lock").get(&key) {
        return s.clone();
    }
    let dir = tempdir();
    let store = IndexStore::new(dir.path()).with_format_version(format_version);
    build_from_table(&store, table, "fuzz", None).expect("a valid table builds");
    let snap = snapshot(dir.path());
    let mut c = cache.lock().expect("cache lock");
    if c.len() >= 512 {
        c.clear();
    }
    c.insert(key, snap.clone());
    snap
}

fn read_file(p: &Path) -> Option<Vec<u8>> {
    std::fs::read(p).ok()
}

fn write_file(p: &Path, bytes: &[u8]) {
    // Published files are 0444; recreate instead of writing in place.
    let _ = std::fs::remove_file(p);
    std::fs::write(p, bytes).expect("write a scratch file");
}

fn edit_file(p: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    if let Some(mut b) = read_file(p) {
        f(&mut b);
        write_file(p, &b);
    }
}

fn put(b: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if b.is_empty() {
        return;
    }
    let offset = offset % b.len();
    for (i, &x) in bytes.iter().take(256).enumerate() {
        if offset + i < b.len() {
            b[offset + i] = x;
        }
    }
}

/// The byte range and element width of a section of either format
/// (version 2 has other sections: each variant names one of them).
fn trie_section(trie: &[u8], section: TrieSection) -> Option<((usize, usize), usize)> {
    let h = format::parse_header(trie).ok()?;
    if h.version == sidx::index::v2::VERSION {
        let s = sidx::index::v2::file_sections(trie)?;
        return Some(match section {
            TrieSection::LevelSidStart => (s.level_sid_start, 8),
            TrieSection::FirstChild => (s.louds, 8),
            TrieSection::NodeToken => (s.node_token, 2),
            TrieSection::TerminalWords => (s.terminal, 8),
            TrieSection::TerminalRank => (s.order, 8),
            TrieSection::SidItemStart => (s.sid_item_start, 8),
            TrieSection::IdOffsets => (
                if s.id_low.1 > s.id_low.0 {
                    s.id_low
                } else {
                    s.id_offsets
                },
                8,
            ),
            TrieSection::IdBytes => (
                if s.id_high.1 > s.id_high.0 {
                    s.id_high
                } else {
                    s.id_bytes
                },
                1,
            ),
        });
    }
    let s = h.counts.sections()?;
    Some(match section {
        TrieSection::LevelSidStart => (s.level_sid_start, 8),
        TrieSection::FirstChild => (s.first_child, 4),
        TrieSection::NodeToken => (s.node_token, 2),
        TrieSection::TerminalWords => (s.terminal_words, 8),
        TrieSection::TerminalRank => (s.terminal_rank, 4),
        TrieSection::SidItemStart => (s.sid_item_start, 4),
        TrieSection::IdOffsets => (s.id_offsets, 4),
        TrieSection::IdBytes => (s.id_bytes, 1),
    })
}

fn apply_mutation(root: &Path, m: &Mutation) {
    match *m {
        Mutation::FlipBit { file, offset, bit } => edit_file(&file.path(root), |b| {
            if !b.is_empty() {
                let i = offset as usize % b.len();
                b[i] ^= 1 << (bit % 8);
            }
        }),
        Mutation::Overwrite {
            file,
            offset,
            ref bytes,
        } => edit_file(&file.path(root), |b| put(b, offset as usize, bytes)),
        Mutation::SetU32 {
            file,
            offset,
            value,
        } => edit_file(&file.path(root), |b| {
            put(b, offset as usize, &value.to_le_bytes())
        }),
        Mutation::SetU64 {
            file,
            offset,
            value,
        } => edit_file(&file.path(root), |b| {
            put(b, offset as usize, &value.to_le_bytes())
        }),
        Mutation::TrieHeader { field, value } => edit_file(&FileSel::Trie.path(root), |b| {
            let (at, width) = match field {
                TrieField::Version => (8, 4),
                TrieField::Flags => (12, 4),
                TrieField::Nodes => (16, 8),
                TrieField::Sids => (24, 8),
                TrieField::Items => (32, 8),
                TrieField::IdBytes => (40, 8),
                TrieField::Depth => (48, 4),
            };
            if b.len() >= at + width {
                b[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }),
        Mutation::TrieElement {
            section,
            index,
            value,
        } => edit_file(&FileSel::Trie.path(root), |b| {
            let Some((range, width)) = trie_section(b, section) else {
                return;
            };
            let n = (range.1 - range.0) / width;
            if n == 0 {
                return;
            }
            let at = range.0 + (index as usize % n) * width;
            if at + width <= b.len() {
                b[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }),
        Mutation::Truncate { file, len } => edit_file(&file.path(root), |b| {
            let len = len as usize % (b.len() + 1);
            b.truncate(len);
        }),
        Mutation::Append { file, ref bytes } => {
            edit_file(&file.path(root), |b| b.extend(bytes.iter().take(4096)))
        }
        Mutation::Remove { file } => {
            let _ = std::fs::remove_file(file.path(root));
        }
        Mutation::SetCurrent { current, published } => {
            let mut text = format!("v{current:08}\n");
            if let Some(p) = published {
                text.push_str(&format!("published-up-to v{p:08}\n"));
            }
            write_file(&FileSel::Current.path(root), text.as_bytes());
        }
        Mutation::Manifest(ref edit) => {
            let p = FileSel::Manifest.path(root);
            let Some(bytes) = read_file(&p) else { return };
            let Ok(mut m) = serde_json::from_slice::<Manifest>(&bytes) else {
                return;
            };
            edit_manifest(&mut m, edit);
            write_file(&p, &m.to_bytes());
        }
    }
}

fn edit_manifest(m: &mut Manifest, edit: &ManifestEdit) {
    let entry = |m: &mut Manifest, i: u8| {
        let n = m.files.len();
        (n > 0).then(|| i as usize % n)
    };
    match edit {
        ManifestEdit::CodebookSizes(s) => m.codebook_sizes = s.iter().take(300).copied().collect(),
        ManifestEdit::Collisions(share) => {
            m.collisions = if *share {
                CollisionMode::Share
            } else {
                CollisionMode::Disambiguate
            }
        }
        ManifestEdit::Sids(v) => m.sids = *v,
        ManifestEdit::Items(v) => m.items = *v,
        ManifestEdit::Nodes(v) => m.nodes = *v,
        ManifestEdit::LayerCounts(c) => {
            m.layer_counts = c
                .iter()
                .take(300)
                .map(|l| l.iter().take(1000).copied().collect())
                .collect()
        }
        ManifestEdit::LayerCount { layer, code, value } => {
            let l = *layer as usize;
            if m.layer_counts.len() <= l {
                m.layer_counts.resize(l + 1, Vec::new());
            }
            let c = &mut m.layer_counts[l];
            let code = (*code as usize) % 4096;
            if c.len() <= code {
                c.resize(code + 1, 0);
            }
            c[code] = *value;
        }
        ManifestEdit::CatalogVersion(v) => m.catalog_version = *v,
        ManifestEdit::HasCodebooks(b) => m.has_codebooks = *b,
        ManifestEdit::FileBytes { entry: i, bytes } => {
            if let Some(i) = entry(m, *i) {
                m.files[i].bytes = *bytes;
            }
        }
        ManifestEdit::FileName { entry: i, name } => {
            if let Some(i) = entry(m, *i) {
                m.files[i].name = name.clone();
            }
        }
        ManifestEdit::RemoveEntry(i) => {
            if let Some(i) = entry(m, *i) {
                m.files.remove(i);
            }
        }
        ManifestEdit::AddEntry {
            name,
            bytes,
            crc32c,
        } => m.files.push(sidx::index::FileEntry {
            name: name.clone(),
            bytes: *bytes,
            crc32c: *crc32c,
        }),
        ManifestEdit::OutsideEntry { name, bytes } => m.files.push(sidx::index::FileEntry {
            name: name.name().to_owned(),
            bytes: u64::from(*bytes % 4),
            crc32c: 0,
        }),
        ManifestEdit::Format(f) => m.format = f.clone(),
        ManifestEdit::FormatVersion(v) => m.format_version = *v,
    }
}

/// Masked CRC32C, as the `fst` crate stores it in its last four bytes.
fn fst_checksum(bytes: &[u8]) -> u32 {
    let sum = crc32c::crc32c(bytes);
    (sum.rotate_right(15)).wrapping_add(0xA282_EAD8)
}

fn apply_fixups(root: &Path, f: &Fixups) {
    if f.trie {
        edit_file(&FileSel::Trie.path(root), |b| {
            if b.len() >= format::HEADER_LEN {
                let body = crc32c::crc32c(&b[format::HEADER_LEN..]);
                b[56..60].copy_from_slice(&body.to_le_bytes());
                let head = crc32c::crc32c(&b[..60]);
                b[60..64].copy_from_slice(&head.to_le_bytes());
            }
        });
    }
    if f.fst {
        for file in [FileSel::SidsFst, FileSel::ItemsFst] {
            edit_file(&file.path(root), |b| {
                if b.len() >= 4 {
                    let n = b.len() - 4;
                    let c = fst_checksum(&b[..n]);
                    b[n..].copy_from_slice(&c.to_le_bytes());
                }
            });
        }
    }
    if f.manifest {
        let p = FileSel::Manifest.path(root);
        let Some(bytes) = read_file(&p) else { return };
        let Ok(mut m) = serde_json::from_slice::<Manifest>(&bytes) else {
            return;
        };
        let dir = p.parent().expect("version dir").to_owned();
        for e in &mut m.files {
            if e.name.contains('/') || e.name.is_empty() || e.name == ".." {
                continue;
            }
            if let Some(b) = read_file(&dir.join(&e.name)) {
                e.bytes = b.len() as u64;
                e.crc32c = crc32c::crc32c(&b);
            }
        }
        write_file(&p, &m.to_bytes());
    }
}

/// Builds a small index, damages its files as told, opens it: `Ok` or
/// `Err`, never a crash; an opened index answers every query.
pub fn index_open(input: IndexOpenInput) {
    let _count = Done;
    let table = spec_table(input.share, input.integer_ids, &input.items);
    let files = built(&table, if input.v2 { 2 } else { 1 });
    let dir = tempdir();
    let root = dir.path();
    restore(root, &files);
    for m in input.mutations.iter().take(8) {
        apply_mutation(root, m);
    }
    apply_fixups(root, &input.fixups);
    let unchanged = input.mutations.is_empty();
    match IndexStore::new(root).open_current() {
        Ok(index) => {
            reached(if unchanged {
                Reached::IndexOpened
            } else {
                Reached::IndexOpenedDamaged
            });
            exercise_index(&index, unchanged.then_some(&table));
            // (Format 2 has no FST files to truncate.)
            if let Some(file) = input.truncate_after_open
                && !matches!(file, FileSel::Manifest | FileSel::Current)
                && file.path(root).exists()
            {
                let p = file.path(root);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .expect("open a mapped file for writing");
                let len = f.metadata().expect("stat").len();
                f.set_len(len / 2).expect("truncate");
                assert!(
                    index.check_unchanged().is_err(),
                    "check_unchanged misses a truncated {}",
                    p.display()
                );
                // Reading the lost pages now would be SIGBUS: stop here.
            }
        }
        Err(e) => {
            reached(Reached::IndexRefused);
            assert!(!unchanged, "an undamaged index fails to open: {e}");
            let _ = e.to_string();
        }
    }
}

// ---------------------------------------------------------------------------
// requests
// ---------------------------------------------------------------------------

/// A served index for request validation, built once.
struct Fixture {
    _dir: tempfile::TempDir,
    files: Snapshot,
    index: Index,
    table: SidTable,
    sidecar: Sidecar,
}

fn fixture_table(mode: CollisionMode) -> SidTable {
    let layout = Layout::new(LAYOUT.to_vec()).expect("valid layout");
    let mut table = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
    // A deterministic LCG: 200 items, skewed codes so that SIDs collide,
    // some dropping layer 2 (a mitigated, variable-length set).
    let mut x: u64 = 0x5eed;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    for i in 0..200 {
        let c1 = next(8).min(next(8)) as u32;
        let c2 = next(8) as u32;
        let c3 = next(4) as u32;
        let sid: Vec<Token> = if next(5) == 0 {
            vec![Token::new(1, c1), Token::new(3, c3)]
        } else {
            vec![Token::new(1, c1), Token::new(2, c2), Token::new(3, c3)]
        };
        table.push(format!("item{i}"), &sid);
    }
    resolve_collisions(&table, mode)
}

fn fixture(share: bool) -> &'static Fixture {
    static F: OnceLock<[Fixture; 2]> = OnceLock::new();
    let all = F.get_or_init(|| {
        [CollisionMode::Disambiguate, CollisionMode::Share].map(|mode| {
            let table = fixture_table(mode);
            let dir = tempdir();
            let store = IndexStore::new(dir.path());
            build_from_table(&store, &table, "fuzz", None).expect("fixture builds");
            let files = snapshot(dir.path());
            let index = store.open_current().expect("fixture opens");
            let limit = index.used_token_limit().max(32);
            let sidecar = Sidecar {
                format: "sidx-generator".into(),
                version: 1,
                vocab_size: 3 + limit,
                pad_id: 0,
                bos_id: Some(1),
                sep_id: 2,
                end_of_sid_id: 2,
                sid_token_offset: Some(3),
                sid_token_ids: None,
                sid_token_names: None,
                prompt_prefix: Vec::new(),
                prompt_suffix: Vec::new(),
                history_separator: None,
                prompt_template: None,
                codebook_sizes: LAYOUT.to_vec(),
                sid_token_limit: limit,
                max_positions: 64,
                max_history_items: 20,
                decoder_start_id: None,
            };
            sidecar
                .check_index(&index)
                .expect("sidecar fits the fixture");
            Fixture {
                _dir: dir,
                files,
                index,
                table,
                sidecar,
            }
        })
    });
    &all[usize::from(share)]
}

/// A number biased toward small values (three in four), else anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Num {
    A(u8),
    B(u8),
    C(u8),
    Any(u32),
}

impl Num {
    fn small(self, m: u32) -> u32 {
        match self {
            Num::A(b) | Num::B(b) | Num::C(b) => u32::from(b) % m,
            Num::Any(v) => v,
        }
    }
}

/// A SID or prefix of a request.
#[derive(Arbitrary, Debug)]
pub enum SidIn {
    /// `(layer, code)` tokens as given.
    Tokens(Vec<(Num, Num)>),
    /// A path of the index: child `choice % children` at each step.
    Walk(Vec<u8>),
    /// A walked path with one token changed.
    WalkThenBreak {
        choices: Vec<u8>,
        at: u8,
        layer: Num,
        code: Num,
    },
}

fn walk(index: &Index, choices: &[u8]) -> Vec<TokenId> {
    let mut node = index.root();
    let mut out = Vec::new();
    for &c in choices.iter().take(8) {
        let kids = index.children(node);
        if kids.is_empty() || (c == 255 && index.is_terminal(node)) {
            break;
        }
        let t = kids[c as usize % kids.len()];
        out.push(t);
        node = index.child(node, t).expect("a child");
    }
    out
}

fn proto_tokens(index: &Index, ids: &[TokenId]) -> Vec<pb::Token> {
    ids.iter()
        .map(|&t| {
            let t = index.token(t);
            pb::Token {
                layer: u32::from(t.layer),
                code: t.code,
            }
        })
        .collect()
}

impl SidIn {
    fn to_proto(&self, index: &Index) -> pb::Sid {
        let tokens = match self {
            SidIn::Tokens(ts) => ts
                .iter()
                .take(12)
                .map(|&(l, c)| pb::Token {
                    layer: l.small(6),
                    code: c.small(12),
                })
                .collect(),
            SidIn::Walk(choices) => proto_tokens(index, &walk(index, choices)),
            SidIn::WalkThenBreak {
                choices,
                at,
                layer,
                code,
            } => {
                let mut ts = proto_tokens(index, &walk(index, choices));
                let t = pb::Token {
                    layer: layer.small(6),
                    code: code.small(12),
                };
                let at = *at as usize % (ts.len() + 1);
                if at == ts.len() {
                    ts.push(t);
                } else {
                    ts[at] = t;
                }
                ts
            }
        };
        pb::Sid { tokens }
    }
}

/// Token ids of a request (`prefix_ids`).
#[derive(Arbitrary, Debug)]
pub enum IdsIn {
    Raw(Vec<Num>),
    Walk(Vec<u8>),
}

impl IdsIn {
    fn to_proto(&self, index: &Index) -> pb::TokenIds {
        let ids = match self {
            IdsIn::Raw(v) => v.iter().take(12).map(|n| n.small(40)).collect(),
            IdsIn::Walk(c) => walk(index, c).into_iter().map(u32::from).collect(),
        };
        pb::TokenIds { ids }
    }
}

/// An item id of a request.
#[derive(Arbitrary, Debug)]
pub enum ItemIn {
    /// Item `n % items` of the index.
    Existing(u8),
    /// A new, well-formed id.
    New(u8),
    Raw(String),
}

impl ItemIn {
    fn id(&self, table: &SidTable) -> String {
        match self {
            ItemIn::Existing(n) => table.id(*n as usize % table.len()).to_owned(),
            ItemIn::New(n) => format!("new{n}"),
            ItemIn::Raw(s) => s.chars().take(64).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum VersionIn {
    Zero,
    Served,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
pub struct NextTokensIn {
    pub version: VersionIn,
    pub prefixes: Vec<SidIn>,
    pub prefix_ids: Vec<IdsIn>,
    pub packed: bool,
}

#[derive(Arbitrary, Debug)]
pub struct LookupIn {
    pub sids: Vec<SidIn>,
    pub item_ids: Vec<ItemIn>,
}

#[derive(Arbitrary, Debug)]
pub enum ChangeIn {
    Empty,
    Embedding { item: ItemIn, values: Vec<f32> },
    Sid { item: ItemIn, sid: Option<SidIn> },
    Delete(ItemIn),
}

#[derive(Arbitrary, Debug)]
pub struct UpdateIn {
    pub changes: Vec<ChangeIn>,
    pub max_changes: u8,
    /// Applied (publishing a new version of a copy of the index) when `% 16 == 0`.
    pub apply: u8,
}

#[derive(Arbitrary, Debug)]
pub struct LimitsIn {
    pub default_beam: u16,
    pub max_beam: u16,
    pub default_top_k: u16,
    pub max_history: u16,
    pub max_sid_len: u8,
}

#[derive(Arbitrary, Debug)]
pub struct GenerateIn {
    pub history_item_ids: Vec<ItemIn>,
    pub history_token_ids: Vec<Num>,
    pub beam_width: Option<Num>,
    pub top_k: Option<Num>,
    pub constrained: Option<bool>,
    pub deadline_ms: u32,
    pub max_positions: Option<Num>,
    pub max_history_items: u8,
    pub limits: Option<LimitsIn>,
}

/// Input of `requests`.
#[derive(Arbitrary, Debug)]
pub struct RequestsInput {
    pub share: bool,
    pub next_tokens: Option<NextTokensIn>,
    pub lookup: Option<LookupIn>,
    pub update: Option<UpdateIn>,
    pub generate: Option<GenerateIn>,
}

const MAX_BATCH: usize = 64;

fn next_tokens_case(f: &Fixture, n: &NextTokensIn) {
    let index = &f.index;
    let req = pb::NextTokensRequest {
        prefixes: n
            .prefixes
            .iter()
            .take(80)
            .map(|s| s.to_proto(index))
            .collect(),
        version: match n.version {
            VersionIn::Zero => 0,
            VersionIn::Served => index.version(),
            VersionIn::Any(v) => v,
        },
        prefix_ids: n
            .prefix_ids
            .iter()
            .take(80)
            .map(|s| s.to_proto(index))
            .collect(),
        packed: n.packed,
    };
    let Ok(valid) = validate::next_tokens(&req, index, MAX_BATCH) else {
        return;
    };
    reached(Reached::NextTokensValid);
    assert_eq!(valid.answers == validate::AnswerForm::Packed, n.packed);
    assert!(!valid.prefixes.is_empty() && valid.prefixes.len() <= MAX_BATCH);
    for p in valid.prefixes.iter() {
        assert!(p.len() <= index.max_sid_len());
        let nt = index.next_tokens(p);
        if let Some(node) = nt.node {
            assert_eq!(nt.allowed, index.children(node));
            for &t in nt.allowed {
                let mut q = p.to_vec();
                q.push(t);
                assert!(index.walk(&q).is_some());
            }
        } else {
            assert!(nt.allowed.is_empty() && !nt.complete);
        }
        let _ = index.tokens(p);
    }
}

fn lookup_case(f: &Fixture, l: &LookupIn) {
    let index = &f.index;
    let req = pb::LookupRequest {
        sids: l.sids.iter().take(80).map(|s| s.to_proto(index)).collect(),
        item_ids: l.item_ids.iter().take(80).map(|i| i.id(&f.table)).collect(),
    };
    let Ok(valid) = validate::lookup(req, index, MAX_BATCH) else {
        return;
    };
    reached(Reached::LookupValid);
    for sid in valid.sids.iter() {
        for id in index.items(sid) {
            assert_eq!(index.sid(&id).as_deref(), Some(sid));
        }
    }
    for id in &valid.item_ids {
        if let Some(sid) = index.sid(id) {
            assert!(index.items(&sid).any(|i| i == id.as_str()));
        }
    }
}

fn update_case(f: &Fixture, u: &UpdateIn) {
    let index = &f.index;
    let mut update = validate::UpdateRequest::new(index, usize::from(u.max_changes) % 40 + 1);
    for c in u.changes.iter().take(48) {
        let change = match c {
            ChangeIn::Empty => None,
            ChangeIn::Embedding { item, values } => Some(
                pb::catalog_change::Change::UpsertEmbedding(pb::UpsertEmbedding {
                    item_id: item.id(&f.table),
                    embedding: values.iter().take(16).copied().collect(),
                }),
            ),
            ChangeIn::Sid { item, sid } => {
                Some(pb::catalog_change::Change::UpsertSid(pb::ItemSid {
                    item_id: item.id(&f.table),
                    sid: sid.as_ref().map(|s| s.to_proto(index)),
                }))
            }
            ChangeIn::Delete(item) => {
                Some(pb::catalog_change::Change::DeleteItemId(item.id(&f.table)))
            }
        };
        if update.add(index, pb::CatalogChange { change }).is_err() {
            return;
        }
    }
    let Ok(update) = update.finish() else { return };
    reached(Reached::UpdateValid);
    if u.apply % 16 != 0 {
        return;
    }
    let upserted: Vec<(String, Vec<Token>)> = update
        .upsert_sids
        .as_ref()
        .map(|t| {
            t.iter()
                .map(|(id, s)| (id.to_owned(), s.to_vec()))
                .collect()
        })
        .unwrap_or_default();
    let deletes = update.deletes.clone();
    let dir = tempdir();
    restore(dir.path(), &f.files);
    let store = IndexStore::new(dir.path());
    let Ok(summary) = update.apply(&store) else {
        return;
    };
    reached(Reached::UpdateApplied);
    let new = store.open_current().expect("an applied update opens");
    assert_eq!(new.version(), index.version() + 1);
    let expected_items = index.item_count() + summary.added as u64 - summary.deleted as u64;
    assert_eq!(new.item_count(), expected_items, "{summary:?}");
    let dis = index.layout().disambiguation_layer();
    for (id, sid) in &upserted {
        let got = new
            .sid(id)
            .unwrap_or_else(|| panic!("upserted item {id:?} has no SID"));
        assert!(
            new.items(&got).any(|i| i == id.as_str()),
            "upserted {id:?} by SID"
        );
        let wanted = token_ids(index.layout(), sid);
        let got_tokens = new.tokens(&got);
        // The SID given, or (disambiguate mode) its quantizer tokens plus a
        // disambiguation token.
        let base =
            |s: &[Token]| -> Vec<Token> { s.iter().copied().filter(|t| t.layer != dis).collect() };
        assert!(
            got == wanted || base(&got_tokens) == base(sid),
            "item {id:?}: asked for {sid:?}, got {got_tokens:?}"
        );
    }
    for id in &deletes {
        assert!(new.sid(id).is_none(), "deleted item {id:?} still has a SID");
    }
    if new.manifest().collisions == CollisionMode::Disambiguate {
        for (sid, id) in new.entries() {
            assert!(
                new.items(&sid).count() <= 1,
                "SID {:?} held by more than one item (one is {id:?})",
                new.tokens(&sid)
            );
        }
    }
    exercise_index(&new, None);
}

fn generate_case(f: &Fixture, g: &GenerateIn) {
    let index = &f.index;
    let msg = pb::GenerateRequest {
        history_item_ids: g
            .history_item_ids
            .iter()
            .take(40)
            .map(|i| i.id(&f.table))
            .collect(),
        history_token_ids: g
            .history_token_ids
            .iter()
            .take(80)
            .map(|n| n.small(40))
            .collect(),
        beam_width: g.beam_width.map(|n| n.small(40)),
        top_k: g.top_k.map(|n| n.small(40)),
        constrained: g.constrained,
        deadline_ms: g.deadline_ms,
    };
    let Ok(req) = validate::generate(msg, Duration::from_secs(1)) else {
        return;
    };
    reached(Reached::GenerateValid);
    let mut sidecar = f.sidecar.clone();
    if let Some(p) = g.max_positions {
        sidecar.max_positions = p.small(80);
    }
    sidecar.max_history_items = u32::from(g.max_history_items % 30);
    let sidecar = match serde_json::to_string(&sidecar)
        .ok()
        .and_then(|j| Sidecar::parse(&j).ok())
        .filter(|s| s.check_index(index).is_ok())
    {
        Some(s) => s,
        None => f.sidecar.clone(),
    };
    let limits = match &g.limits {
        Some(l) => GeneratorLimits {
            default_beam: usize::from(l.default_beam % 600),
            max_beam: usize::from(l.max_beam % 600),
            default_top_k: usize::from(l.default_top_k % 600),
            max_history: usize::from(l.max_history % 100),
            max_sid_len: usize::from(l.max_sid_len % 12),
            ..GeneratorLimits::default()
        },
        None => GeneratorLimits::default(),
    };
    let Ok(ValidRequest { prompt, config, .. }) = ValidRequest::new(&limits, &sidecar, index, &req)
    else {
        return;
    };
    reached(Reached::Prepared);
    assert!(config.beam >= 1 && config.beam <= limits.max_beam);
    assert!(config.top_k >= 1 && config.top_k <= config.beam);
    assert!(
        prompt.len() + index.max_sid_len() + 1 <= sidecar.max_positions as usize,
        "prompt of {} tokens leaves no room for a SID of {} in {} positions",
        prompt.len(),
        index.max_sid_len(),
        sidecar.max_positions
    );
    assert!(
        prompt
            .iter()
            .all(|&t| t >= 0 && t < i64::from(sidecar.vocab_size)),
        "prompt token outside the vocabulary: {prompt:?}"
    );
    if let History::Items(ids) = &req.history {
        assert!(!ids.is_empty());
        if let Some(bos) = sidecar.bos_id {
            assert_eq!(prompt[0], i64::from(bos));
        }
    }
}

/// Request validation of every kind against a served index; valid requests
/// are then run (and a valid update applied, one input in sixteen).
pub fn requests(input: RequestsInput) {
    let _count = Done;
    let f = fixture(input.share);
    if let Some(n) = &input.next_tokens {
        next_tokens_case(f, n);
    }
    if let Some(l) = &input.lookup {
        lookup_case(f, l);
    }
    if let Some(u) = &input.update {
        update_case(f, u);
    }
    if let Some(g) = &input.generate {
        generate_case(f, g);
    }
}
