//! Index files on disk: corruption is refused cleanly, crashed builds leave
//! the last good version, readers never see a mixed state during swaps, and
//! bad build/update input publishes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sidx::catalog::CatalogUpdate;
use sidx::index::{IndexStore, build_from_table, format};
use sidx::server::metrics::Metrics;
use sidx::server::{IndexState, ServerConfig};
use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable, Token};

fn catalog(n: usize, prefix: &str) -> SidTable {
    let layout = Layout::new(vec![16, 16, 16]).unwrap();
    let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
    for i in 0..n as u32 {
        let sid = [
            Token::new(1, i % 16),
            Token::new(2, (i / 16) % 16),
            Token::new(3, (i * 7) % 16),
        ];
        t.push(format!("{prefix}{i}"), &sid);
    }
    t
}

fn built(n: usize) -> (tempfile::TempDir, IndexStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::new(dir.path());
    build_from_table(&store, &catalog(n, "item-"), "test", None).unwrap();
    (dir, store)
}

/// Opening must fail with an error naming `file`; a panic fails the test.
fn refused(store: &IndexStore, file: &str, what: &str) {
    match store.open_current() {
        Ok(_) => panic!("{what}: corrupt {file} was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(file),
                "{what}: error does not name {file}: {msg}"
            );
        }
    }
}

#[test]
fn corruption_matrix_v1() {
    corruption_matrix(
        1,
        "item-",
        &["trie.bin", "sids.fst", "items.fst", "manifest.json"],
    );
}

#[test]
fn corruption_matrix_v2_string_ids() {
    corruption_matrix(2, "item-", &["trie.bin", "manifest.json"]);
}

#[test]
fn corruption_matrix_v2_integer_ids() {
    corruption_matrix(2, "", &["trie.bin", "manifest.json"]);
}

/// Truncations, byte flips and missing files of each of `files` in a
/// version of `format` whose item ids are `{prefix}{n}`, all refused naming the file.
fn corruption_matrix(format: u32, prefix: &str, files: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::new(dir.path()).with_format_version(format);
    build_from_table(&store, &catalog(300, prefix), "test", None).unwrap();
    let vdir = store.version_dir(1);
    assert_eq!(store.open_current().unwrap().format_version(), format);
    let listed: Vec<String> = store
        .open_current()
        .unwrap()
        .manifest()
        .files
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(listed.len() + 1, files.len(), "{listed:?}");
    for &file in files {
        let path = vdir.join(file);
        let good = std::fs::read(&path).unwrap();
        // Truncation by 1..=64 bytes, then in large steps down to empty.
        let mut cuts: Vec<usize> = (1..=64.min(good.len())).collect();
        cuts.extend((64..good.len()).step_by(good.len() / 16 + 1));
        cuts.push(good.len());
        for cut in cuts {
            std::fs::write(&path, &good[..good.len() - cut]).unwrap();
            refused(&store, file, &format!("{file} truncated by {cut}"));
        }
        // Byte flips across the file.
        for pos in (0..good.len()).step_by(good.len() / 97 + 1) {
            let mut bad = good.clone();
            bad[pos] ^= 0xff;
            std::fs::write(&path, &bad).unwrap();
            refused(&store, file, &format!("{file} byte {pos} flipped"));
        }
        // Missing.
        std::fs::remove_file(&path).unwrap();
        refused(&store, file, &format!("{file} missing"));
        std::fs::write(&path, &good).unwrap();
        store.open_current().expect("restored file opens again");
    }

    // Wrong magic, and a wrong format version with a valid header checksum.
    let path = vdir.join("trie.bin");
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[0..8].copy_from_slice(b"NOTATRIE");
    std::fs::write(&path, &bad).unwrap();
    refused(&store, "trie.bin", "bad magic");
    let h = format::parse_header(&good).unwrap();
    assert_eq!(h.version, format);
    // Another version this build reads (the manifest disagrees, or flags
    // of v2 are unknown to v1), and one it does not.
    let other_says = if h.counts.flags & sidx::index::v2::INTEGER_IDS != 0 {
        "unknown flags"
    } else {
        "manifest records"
    };
    for (other, says) in [(3 - format, other_says), (3, "version 3")] {
        let mut bad = good.clone();
        bad[..format::HEADER_LEN].copy_from_slice(&format::header(other, &h.counts, h.body_crc));
        std::fs::write(&path, &bad).unwrap();
        let e = store.open_current().err().unwrap().to_string();
        assert!(e.contains("trie.bin") && e.contains(says), "{e}");
    }
    std::fs::write(&path, &good).unwrap();

    // Manifest of another format version.
    let mpath = vdir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).unwrap();
    std::fs::write(
        &mpath,
        text.replace(
            &format!("\"format_version\": {format}"),
            "\"format_version\": 7",
        ),
    )
    .unwrap();
    let e = store.open_current().err().unwrap().to_string();
    assert!(
        e.contains("manifest.json") && e.contains("version 7"),
        "{e}"
    );
    std::fs::write(&mpath, &text).unwrap();

    // CURRENT pointing nowhere, and garbage in CURRENT.
    std::fs::write(store.root().join("CURRENT"), "v00000009\n").unwrap();
    refused(&store, "v00000009", "CURRENT names a missing version");
    std::fs::write(store.root().join("CURRENT"), "garbage").unwrap();
    refused(&store, "CURRENT", "unreadable CURRENT");
    std::fs::write(store.root().join("CURRENT"), "v00000001\n").unwrap();
    assert_eq!(store.open_current().unwrap().item_count(), 300);
}

#[test]
fn empty_and_missing_roots() {
    let dir = tempfile::tempdir().unwrap();
    let e = IndexStore::new(&dir.path().join("nothing"))
        .open_current()
        .err()
        .unwrap();
    assert!(e.to_string().contains("no index version"), "{e}");
    let (_d, store) = built(10);
    std::fs::write(store.version_dir(1).join("trie.bin"), b"").unwrap();
    refused(&store, "trie.bin", "empty trie.bin");
}

fn sidx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sidx"));
    c.args(["--log", "warn"]);
    c
}

fn write_sids(dir: &Path, name: &str, table: &SidTable) -> PathBuf {
    let p = dir.join(name);
    table.write(&p).unwrap();
    p
}

#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the crash points: cargo test --features failpoints"
)]
#[test]
fn a_crashed_build_leaves_the_last_good_version() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("index");
    let v1 = write_sids(work.path(), "v1.tsv", &catalog(200, "a-"));
    let v2 = write_sids(work.path(), "v2.tsv", &catalog(250, "b-"));
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let ok = sidx()
        .args(["index", "build", "--sids", &s(&v1), "--out", &s(&root)])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let store = IndexStore::new(&root);

    for point in ["mid-build", "after-data", "before-rename", "before-current"] {
        let out = sidx()
            .args(["index", "build", "--sids", &s(&v2), "--out", &s(&root)])
            .env("SIDX_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: the build should have died");
        let index = store.open_current().unwrap();
        assert_eq!(
            index.item_count(),
            200,
            "{point}: the last good version serves"
        );
        assert!(index.sid("a-7").is_some() && index.sid("b-7").is_none());
        let leftovers: Vec<_> = std::fs::read_dir(root.join("versions"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{point}: temporaries cleaned on open");
    }
    let out = sidx()
        .args(["index", "build", "--sids", &s(&v2), "--out", &s(&root)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let index = store.open_current().unwrap();
    assert_eq!(index.item_count(), 250);
    assert!(index.version() >= 2);
}

#[test]
fn readers_never_see_a_mixed_state_while_versions_swap() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::new(dir.path()).with_keep(2);
    build_from_table(&store, &catalog(100, "v0-"), "test", None).unwrap();
    // The services' state: readers take the served version, reloads swap it.
    let handle = Arc::new(IndexState::new(
        store.clone(),
        ServerConfig::default(),
        Arc::new(Metrics::default()),
    ));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(handle.reload()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (handle, stop, checks) = (handle.clone(), stop.clone(), checks.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let index = handle.current().expect("a version is served");
                    // Version k holds items "v0-*" (100) plus "u{k}-*" for every update ≤ k.
                    let v = index.version();
                    assert_eq!(index.item_count(), 100 + 10 * (v - 1), "version {v}");
                    for u in 2..=v {
                        let id = format!("u{u}-3");
                        let sid = index
                            .sid(&id)
                            .unwrap_or_else(|| panic!("{id} missing in v{v}"));
                        assert!(index.items(&sid).any(|i| i == id));
                    }
                    assert!(index.sid(&format!("u{}-0", v + 1)).is_none());
                    let next = index.next_tokens(&[]);
                    assert!(!next.allowed.is_empty());
                    checks.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for k in 2..=21u64 {
        let mut t = catalog(10, &format!("u{k}-"));
        t.header_mut().collisions = CollisionMode::Share;
        CatalogUpdate {
            upsert_sids: Some(t),
            ..CatalogUpdate::default()
        }
        .apply(&store)
        .unwrap();
        assert_eq!(runtime.block_on(handle.reload()).unwrap(), Some(k));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader failed");
    }
    assert!(checks.load(Ordering::Relaxed) > 0);
    assert_eq!(
        store.versions().unwrap(),
        vec![20, 21],
        "old versions removed"
    );
}

#[test]
fn bad_input_publishes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("index");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let v1 = write_sids(work.path(), "v1.tsv", &catalog(50, "a-"));
    assert!(
        sidx()
            .args(["index", "build", "--sids", &s(&v1), "--out", &s(&root)])
            .status()
            .unwrap()
            .success()
    );
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "bad.tsv",
            "a-0\t1:1 zz\n",
            &["bad.tsv:1:", "not layer:code"],
        ),
        (
            "range.tsv",
            "#sidx {\"format\":\"sidx-sids\",\"version\":1,\"codebook_sizes\":[16,16,16],\"collisions\":\"share\"}\nx\t1:99\n",
            &["range.tsv:2:", "out of range"],
        ),
        (
            "dup.tsv",
            "x\t1:1\nx\t1:2\n",
            &["dup.tsv:2:", "duplicate item id"],
        ),
    ];
    for (name, text, needles) in cases {
        let p = work.path().join(name);
        std::fs::write(&p, text).unwrap();
        for args in [
            vec![
                "index",
                "build",
                "--sids",
                p.to_str().unwrap(),
                "--out",
                root.to_str().unwrap(),
            ],
            vec![
                "index",
                "update",
                "--index",
                root.to_str().unwrap(),
                "--upsert-sids",
                p.to_str().unwrap(),
            ],
        ] {
            let out = sidx().args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success());
            for n in *needles {
                assert!(err.contains(n), "{args:?}: {err}");
            }
        }
    }
    let deletes = work.path().join("deletes.txt");
    std::fs::write(&deletes, "a-1\nnope\n").unwrap();
    let out = sidx()
        .args([
            "index",
            "update",
            "--index",
            &s(&root),
            "--deletes",
            &s(&deletes),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("unknown item id \"nope\"")
            && err.contains("entry 2"),
        "{err}"
    );
    let store = IndexStore::new(&root);
    assert_eq!(store.versions().unwrap(), vec![1], "nothing published");
    assert_eq!(store.open_current().unwrap().item_count(), 50);
}

#[test]
fn explicit_upserts_of_taken_sids_are_disambiguated() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::new(dir.path());
    let layout = Layout::new(vec![16, 16, 16]).unwrap();
    let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Disambiguate));
    let sid = [Token::new(1, 1), Token::new(2, 2), Token::new(3, 3)];
    t.push("old", &sid);
    build_from_table(&store, &t, "test", None).unwrap();
    let mut up = SidTable::new(SidHeader::new(&layout, CollisionMode::Disambiguate));
    up.push("new-a", &sid);
    up.push("new-b", &sid);
    // A header-less layout would differ ([2, 3, 4]); tokens are read with the index's layout.
    let s = CatalogUpdate {
        upsert_sids: Some(up),
        ..CatalogUpdate::default()
    }
    .apply(&store)
    .unwrap();
    assert_eq!((s.added, s.disambiguated), (2, 2));
    let index = store.open_current().unwrap();
    let ids = |sid: &[Token]| {
        sid.iter()
            .map(|&t| layout.token_id(t).unwrap() as u16)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        index.sid("old").unwrap(),
        ids(&sid),
        "existing items keep their SIDs"
    );
    let a = index.sid("new-a").unwrap();
    let b = index.sid("new-b").unwrap();
    assert_eq!(a[..3], ids(&sid)[..]);
    assert_ne!(a, b);
    assert_eq!(index.items(&a).collect::<Vec<_>>(), vec!["new-a"]);
    assert_eq!(index.items(&ids(&sid)).collect::<Vec<_>>(), vec!["old"]);
}

#[test]
fn migrate_publishes_a_v1_version_as_v2_with_every_entry() {
    for prefix in ["item-", ""] {
        let dir = tempfile::tempdir().unwrap();
        let store = IndexStore::new(dir.path()).with_format_version(1);
        build_from_table(&store, &catalog(500, prefix), "test", None).unwrap();
        let v1 = store.open_current().unwrap();
        assert_eq!(v1.format_version(), 1);
        let before: Vec<_> = v1.entries().map(|(s, i)| (s, i.into_owned())).collect();

        let s = sidx::index::migrate(&store, 2)
            .unwrap()
            .expect("a v1 version is migrated");
        assert_eq!(s.version, 2);
        let v2 = store.open_current().unwrap();
        assert_eq!(v2.format_version(), 2);
        assert_eq!(v2.manifest().files.len(), 1, "v2 is trie.bin alone");
        assert!(v2.manifest().source.contains("migrated from format 1 to 2"));
        let after: Vec<_> = v2.entries().map(|(s, i)| (s, i.into_owned())).collect();
        assert_eq!(before, after);
        for (sid, id) in &before {
            assert_eq!(v2.sid(id).as_ref(), Some(sid), "{id}");
        }
        assert_eq!(v2.manifest().layer_counts, v1.manifest().layer_counts);
        assert!(
            v2.manifest().bytes() < v1.manifest().bytes(),
            "v2 {} bytes, v1 {}",
            v2.manifest().bytes(),
            v1.manifest().bytes()
        );
        // Already v2: nothing is published; the v1 version still opens.
        assert!(sidx::index::migrate(&store, 2).unwrap().is_none());
        assert_eq!(store.versions().unwrap(), vec![1, 2]);
        assert_eq!(store.open_version(1).unwrap().format_version(), 1);
    }
}

/// A format-1 `items.fst` whose root address is forged and whose own
/// checksum is fixed up (fuzz/regressions/index_open/crash-fst-forged-root-addr):
/// the version is refused or answers every item lookup; it never panics in
/// the `fst` crate, which trusts the root address once the checksum holds.
#[test]
fn a_forged_fst_root_address_cannot_crash_item_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::new(dir.path()).with_format_version(1);
    let table = catalog(300, "item-");
    build_from_table(&store, &table, "test", None).unwrap();
    let path = store.version_dir(1).join("items.fst");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    // Footer: … root address u64, checksum u32 (masked CRC32C of all before it).
    bytes[n - 12..n - 4].copy_from_slice(&(n as u64 * 1000).to_le_bytes());
    let sum = crc32c::crc32c(&bytes[..n - 4])
        .rotate_right(15)
        .wrapping_add(0xA282_EAD8);
    bytes[n - 4..].copy_from_slice(&sum.to_le_bytes());
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    // The fst crate accepts the forged footer (its checksum holds), so the
    // version opens and every lookup below would have walked the forged FST.
    let index = store.open_current().expect("a checksummed FST opens");
    for (id, sid) in table.iter() {
        let ids: Vec<_> = sid.iter().map(|&t| index.token_id(t).unwrap()).collect();
        assert_eq!(index.sid(id), Some(ids), "{id}");
    }
    assert!(index.sid("no-such-item").is_none());
}

/// Format 2 answers child lookups from a plain array for the top quarter of
/// its nodes and from the LOUDS bits below: both agree with format 1 on
/// every node, one at a time and batched (the beam step's call).
#[test]
fn v2_child_lookups_agree_with_v1_on_every_node() {
    let table = catalog(3000, "");
    let open = |format| {
        let dir = tempfile::tempdir().unwrap();
        let store = IndexStore::new(dir.path()).with_format_version(format);
        build_from_table(&store, &table, "test", None).unwrap();
        (dir, store.open_current().unwrap())
    };
    let ((_d1, v1), (_d2, v2)) = (open(1), open(2));
    let nodes = v1.manifest().nodes;
    assert_eq!(nodes, v2.manifest().nodes);
    let all: Vec<u32> = (0..nodes as u32 + 2).collect();
    let (mut k1, mut k2) = (Vec::new(), Vec::new());
    v1.children_of_all(&all, &mut k1);
    v2.children_of_all(&all, &mut k2);
    for &n in &all {
        assert_eq!(v1.children(n), v2.children(n), "node {n}");
        assert_eq!(k1[n as usize], k2[n as usize], "node {n}, batched");
        for &t in v1.children(n) {
            assert_eq!(v1.child(n, t), v2.child(n, t), "node {n} token {t}");
        }
    }
}

/// Wide nodes (hundreds of children spread over a wider token range) find
/// a child from a bitmap: every token of the layout, present or not, from
/// every node on every SID's path, gets the node whose children are the
/// table's next tokens after that prefix, or nothing — in both formats.
#[test]
fn wide_nodes_find_exactly_their_children() {
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};
    let layout = Layout::new(vec![1024, 1024, 8]).unwrap();
    let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for i in 0..40_000u32 {
        // Layer 1: 680 of 1024 codes, most of the items under code 3 (a
        // level-1 node with hundreds of children, not a full codebook).
        let c1 = if i % 2 == 0 {
            3
        } else {
            rng.random_range(0..680) * 3 / 2
        };
        let sid = [
            Token::new(1, c1),
            Token::new(2, rng.random_range(0..1024) & !1),
            Token::new(3, rng.random_range(0..8)),
        ];
        t.push(format!("{i}"), &sid);
    }
    for format in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let store = IndexStore::new(dir.path()).with_format_version(format);
        build_from_table(&store, &t, "test", None).unwrap();
        let index = store.open_current().unwrap();
        assert!(
            index.wide_nodes() >= 2,
            "format {format}: {} wide",
            index.wide_nodes()
        );
        let mut next: BTreeMap<Vec<u16>, BTreeSet<u16>> = BTreeMap::new();
        for (_, sid) in t.iter() {
            let ids: Vec<u16> = sid.iter().map(|&x| index.token_id(x).unwrap()).collect();
            for d in 0..ids.len() {
                next.entry(ids[..d].to_vec()).or_default().insert(ids[d]);
            }
            next.entry(ids.clone()).or_default();
        }
        let limit = index.token_id_limit() as u16;
        for (prefix, want) in next.iter().filter(|(_, w)| w.len() >= 64) {
            let node = index.walk(prefix).unwrap();
            // Given another node's children (a leaf's: none), a wide node's
            // move finds no child rather than a node past those children.
            let leaf = index.walk(next.keys().last().unwrap()).unwrap();
            let mut other = Vec::new();
            index.children_of_all(&[leaf], &mut other);
            let present = *want.iter().next().unwrap();
            assert_eq!(index.child_in(node, &other[0], present), None, "{prefix:?}");
            for tok in 0..limit {
                let mut longer = prefix.clone();
                longer.push(tok);
                match (index.child(node, tok), next.get(&longer)) {
                    (None, None) => {}
                    (Some(c), Some(kids)) => {
                        assert!(want.contains(&tok));
                        let got: BTreeSet<u16> = index.children(c).iter().copied().collect();
                        assert_eq!(&got, kids, "format {format}: {longer:?}");
                    }
                    (got, _) => panic!("format {format}: {longer:?} gave {got:?}"),
                }
            }
        }
    }
}

/// Builds the SID file `text` through `build_from_sid_file` (integer ids
/// go straight into sort records) and through a table; both must give the
/// same index — entries, counts and layer counts — or the same error.
fn sid_file_build_matches_table(text: &str, format_version: u32) -> Result<(), String> {
    use sidx::index::{IndexError, build_from_sid_file};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.tsv");
    std::fs::write(&path, text).unwrap();
    let store =
        |name: &str| IndexStore::new(&dir.path().join(name)).with_format_version(format_version);
    let (direct, table) = (store("direct"), store("table"));
    let a = build_from_sid_file(&direct, &path, "test", None);
    let b = SidTable::read(&path)
        .map_err(IndexError::from)
        .and_then(|t| build_from_table(&table, &t, "test", None));
    match (a, b) {
        (Ok(_), Ok(_)) => {
            let (a, b) = (
                direct.open_current().unwrap(),
                table.open_current().unwrap(),
            );
            let (ma, mb) = (a.manifest(), b.manifest());
            assert_eq!((ma.sids, ma.items, ma.nodes), (mb.sids, mb.items, mb.nodes));
            assert_eq!(ma.layer_counts, mb.layer_counts);
            assert_eq!(ma.collisions, mb.collisions);
            assert!(a.entries().eq(b.entries()), "entries differ");
            Ok(())
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            Err(a.to_string())
        }
        (a, b) => panic!("direct {:?} vs table {:?}", a.map(|_| ()), b.map(|_| ())),
    }
}

#[test]
fn sid_files_build_the_same_index_with_or_without_a_table() {
    let header = |sizes: &str, collisions: &str| {
        format!(
            "#sidx {{\"format\":\"sidx-sids\",\"version\":1,\"codebook_sizes\":[{sizes}],\"collisions\":\"{collisions}\"}}\n"
        )
    };
    // Enough lines for several parallel pieces.
    let n = 40_000u64;
    let line = |id: &str, i: u64| {
        format!(
            "{id}\t1:{} 2:{} 3:{}\n",
            i % 64,
            (i / 64) % 64,
            (i * 7) % 64
        )
    };
    let rising: String = (0..n).map(|i| line(&(3 * i).to_string(), i)).collect();
    let mut shuffled: Vec<u64> = (0..n).map(|i| (i * 7919) % n).collect();
    let shuffled_text: String = shuffled.iter().map(|&i| line(&i.to_string(), i)).collect();
    let strings: String = (0..n).map(|i| line(&format!("item-{i}"), i)).collect();
    // Shared SIDs: ids of one SID in text order ("10" before "9"), with
    // disambiguation tokens (layer 4) on some.
    let shared: String = (0..n)
        .map(|i| match i % 3 {
            0 => format!("{i}\t1:{} 2:1\n", i % 8),
            1 => format!("{i}\t1:{} 2:1 3:2 4:{}\n", i % 8, i % 5),
            _ => format!("{i}\t1:{}\n", i % 8),
        })
        .collect();
    for v in [1, 2] {
        let h = header("64,64,64", "disambiguate");
        let hs = header("64,64,64", "share");
        sid_file_build_matches_table(&(h.clone() + &rising), v).unwrap();
        sid_file_build_matches_table(&(h.clone() + &shuffled_text), v).unwrap();
        sid_file_build_matches_table(&(h.clone() + &strings), v).unwrap();
        sid_file_build_matches_table(&(hs.clone() + &shared), v).unwrap();
        // No header: the layout is inferred.
        sid_file_build_matches_table(&rising, v).unwrap();
        // Leading zeros are other ids than the integers they spell.
        sid_file_build_matches_table(&format!("{h}7\t1:1\n007\t1:1\n"), v).unwrap();
        // An id listed twice, near the end (the ids do not rise: 0 is last).
        shuffled.push(shuffled[5]);
        let twice: String = shuffled.iter().map(|&i| line(&i.to_string(), i)).collect();
        shuffled.pop();
        let e = sid_file_build_matches_table(&(h.clone() + &twice), v).unwrap_err();
        assert!(e.contains("duplicate item id"), "{e}");
        // The same id and SID twice in a row.
        let e = sid_file_build_matches_table(&format!("{h}1\t1:1\n1\t1:1\n"), v).unwrap_err();
        assert!(e.contains("s.tsv:3:"), "{e}");
        // A bad line late in the file, and a code beyond its codebook.
        let e = sid_file_build_matches_table(&format!("{h}{rising}x\t1:1 2\n"), v).unwrap_err();
        assert!(e.contains(&format!("s.tsv:{}:", n + 2)), "{e}");
        let e = sid_file_build_matches_table(&format!("{h}{rising}9\t1:64\n"), v).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        // A layout beyond 16-bit token ids, even when the codes used fit.
        let wide = header("40000,40000", "share");
        let e = sid_file_build_matches_table(&format!("{wide}1\t1:1 2:1\n"), v).unwrap_err();
        assert!(e.contains("16-bit token ids"), "{e}");
        // Nothing but the header.
        let e = sid_file_build_matches_table(&h, v).unwrap_err();
        assert!(e.contains("no items"), "{e}");
    }
}
