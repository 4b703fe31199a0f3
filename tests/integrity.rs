//! Regression tests for the integrity, access and resource defects found by
//! adversarial testing (one section per defect): each fails on the code
//! before its fix.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wait_for_health;
use sidx::catalog::CatalogUpdate;
use sidx::index::{IndexError, IndexStore, Manifest, build_from_table};
use sidx::proto::v1::index_service_client::IndexServiceClient;
use sidx::proto::v1::*;
use sidx::server::{RunningServer, ServerConfig, start_index_server};
use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable, Token as SidToken};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

const TOKEN: &str = "integrity-admin-token-0123";
const REPLICATION: &str = "integrity-replication-0123";

fn layout() -> Layout {
    Layout::new(vec![8, 8, 8]).unwrap()
}

/// 200 items over layout [8, 8, 8], disambiguated where they collide.
fn table(mode: CollisionMode) -> SidTable {
    let mut t = SidTable::new(SidHeader::new(&layout(), CollisionMode::Share));
    for i in 0..200u32 {
        t.push(
            format!("sku-{i}"),
            &[
                SidToken::new(1, i % 8),
                SidToken::new(2, (i / 8) % 8),
                SidToken::new(3, i % 5),
            ],
        );
    }
    sidx::sid::resolve_collisions(&t, mode)
}

fn built(dir: &Path) -> IndexStore {
    let store = IndexStore::new(dir);
    build_from_table(&store, &table(CollisionMode::Disambiguate), "test", None).unwrap();
    store
}

fn config() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_token: Some(TOKEN.into()),
        reload_interval_ms: 50,
        drain_timeout_s: 1,
        ..ServerConfig::default()
    }
}

async fn serve(root: &Path, config: ServerConfig) -> (RunningServer, IndexServiceClient<Channel>) {
    let server = start_index_server(IndexStore::new(root), config, std::future::pending())
        .await
        .unwrap();
    wait_for_health(&server, ServingStatus::Serving).await;
    let client = IndexServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    (server, client)
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn sid(tokens: &[(u32, u32)]) -> Sid {
    Sid {
        tokens: tokens
            .iter()
            .map(|&(layer, code)| Token { layer, code })
            .collect(),
    }
}

fn upsert(id: &str, tokens: &[(u32, u32)]) -> CatalogChange {
    CatalogChange {
        change: Some(catalog_change::Change::UpsertSid(ItemSid {
            item_id: id.into(),
            sid: Some(sid(tokens)),
        })),
    }
}

/// `count` upserts (items c-0…), one every `every`, on a channel-fed stream.
fn slow_stream(
    count: u32,
    every: Duration,
) -> tokio_stream::wrappers::ReceiverStream<CatalogChange> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0..count {
            let change = upsert(&format!("c-{i}"), &[(1, i % 8), (2, 7), (3, 7)]);
            if tx.send(change).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

fn version_dirs(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---- 1. A cancelled ApplyCatalogUpdate applies nothing ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_deadline_or_drain_applies_no_part_of_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = built(dir.path());
    let (server, client) = serve(dir.path(), config()).await;

    // Cancelled (the future dropped: RST_STREAM CANCEL) half-way.
    let mut c = client.clone();
    let call = tokio::spawn(async move {
        c.apply_catalog_update(with_token(
            slow_stream(20, Duration::from_millis(50)),
            TOKEN,
        ))
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.abort();
    // A deadline that passes mid-stream.
    let mut c = client.clone();
    let mut req = with_token(slow_stream(20, Duration::from_millis(50)), TOKEN);
    req.set_timeout(Duration::from_millis(400));
    let e = c.apply_catalog_update(req).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(store.current().unwrap(), Some(1), "nothing was published");
    assert_eq!(store.versions().unwrap(), vec![1]);
    assert!(store.open_current().unwrap().sid("c-0").is_none());

    // The same stream, ended cleanly, is applied whole.
    let mut c = client.clone();
    let r = c
        .apply_catalog_update(with_token(slow_stream(20, Duration::from_millis(5)), TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.version, r.added), (2, 20));

    // A drain that begins mid-stream applies nothing either.
    let mut c = client.clone();
    let call = tokio::spawn(async move {
        c.apply_catalog_update(with_token(
            slow_stream(20, Duration::from_millis(100)),
            TOKEN,
        ))
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.shutdown().await.unwrap();
    let _ = call.await;
    assert_eq!(store.current().unwrap(), Some(2));
    assert_eq!(store.versions().unwrap(), vec![1, 2]);
}

fn python() -> PathBuf {
    std::env::var_os("SIDX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

fn python_update(addr: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sidx_update_client.py"))
        .args(["--addr", addr, "--token", TOKEN])
        .args(extra);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_that_cancel_time_out_or_die_apply_nothing() {
    assert!(
        python().exists(),
        "{} is missing: run scripts/setup-python.sh",
        python().display()
    );
    let dir = tempfile::tempdir().unwrap();
    let store = built(dir.path());
    let (server, _client) = serve(dir.path(), config()).await;
    let addr = server.addr.to_string();
    let run = |extra: &'static [&'static str]| {
        let out = python_update(&addr, extra).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let cancelled = tokio::task::block_in_place(|| run(&["--cancel-after", "0.5"]));
    assert_eq!(cancelled["code"], "CANCELLED");
    // The client's deadline, or the server's answer to it (tonic: CANCELLED), ends it.
    let late = tokio::task::block_in_place(|| run(&["--deadline", "0.5"]));
    assert!(
        late["code"] == "DEADLINE_EXCEEDED" || late["code"] == "CANCELLED",
        "{late}"
    );
    // A client process killed mid-stream.
    let mut child = python_update(&addr, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    tokio::task::block_in_place(|| {
        while !line.contains("\"sent\": 5") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "client ended early");
        }
    });
    child.kill().unwrap();
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.versions().unwrap(), vec![1], "nothing was published");
    let done = tokio::task::block_in_place(|| run(&["--interval", "0"]));
    assert_eq!(
        (done["code"].as_str(), done["version"].as_u64()),
        (Some("OK"), Some(2))
    );
    server.shutdown().await.unwrap();
}

// ---- 2. Unique SIDs in disambiguate mode ----

fn ids(l: &Layout, tokens: &[(u8, u32)]) -> Vec<u16> {
    tokens
        .iter()
        .map(|&(layer, code)| l.token_id(SidToken::new(layer, code)).unwrap() as u16)
        .collect()
}

fn sid_table(rows: &[(&str, &[(u8, u32)])]) -> SidTable {
    let mut t = SidTable::new(SidHeader::new(&layout(), CollisionMode::Disambiguate));
    for (id, sid) in rows {
        let sid: Vec<SidToken> = sid.iter().map(|&(l, c)| SidToken::new(l, c)).collect();
        t.push(*id, &sid);
    }
    t
}

#[test]
fn no_two_items_share_a_sid_and_explicit_tokens_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::new(dir.path());
    let p: &[(u8, u32)] = &[(1, 5), (2, 5), (3, 5)];
    build_from_table(&store, &sid_table(&[("P", p)]), "test", None).unwrap();
    // Y is P's bare SID, X claims P's SID plus 4:0, Z an explicit token on a free SID.
    let x: &[(u8, u32)] = &[(1, 5), (2, 5), (3, 5), (4, 0)];
    let z: &[(u8, u32)] = &[(1, 2), (2, 2), (3, 2), (4, 3)];
    let s = CatalogUpdate {
        upsert_sids: Some(sid_table(&[("Y", p), ("X", x), ("Z", z)])),
        ..CatalogUpdate::default()
    }
    .apply(&store)
    .unwrap();
    assert_eq!((s.added, s.disambiguated), (3, 1));
    let index = store.open_current().unwrap();
    let l = layout();
    assert_eq!(index.sid("P").unwrap(), ids(&l, p), "P keeps its SID");
    assert_eq!(
        index.sid("X").unwrap(),
        ids(&l, x),
        "X gets the SID it asked for"
    );
    assert_eq!(
        index.sid("Y").unwrap(),
        ids(&l, &[(1, 5), (2, 5), (3, 5), (4, 1)]),
        "Y gets the next free code"
    );
    assert_eq!(
        index.sid("Z").unwrap(),
        ids(&l, z),
        "an explicit token is not dropped"
    );
    for (sid, _) in index.entries() {
        assert_eq!(index.items(&sid).count(), 1, "SID {sid:?} is shared");
    }
    // An explicit SID someone holds is refused, naming the holder; nothing is published.
    let e = CatalogUpdate {
        upsert_sids: Some(sid_table(&[("W", x)])),
        ..CatalogUpdate::default()
    }
    .apply(&store)
    .unwrap_err();
    assert!(
        matches!(&e, IndexError::SidTaken { holder, .. } if holder == "X"),
        "{e}"
    );
    assert_eq!(store.versions().unwrap(), vec![1, 2]);
    // ...unless the holder is re-pointed or deleted by the same update.
    let s = CatalogUpdate {
        upsert_sids: Some(sid_table(&[("W", x)])),
        deletes: vec!["X".into()],
        ..CatalogUpdate::default()
    }
    .apply(&store)
    .unwrap();
    assert_eq!(s.added, 1);
    assert_eq!(store.open_current().unwrap().sid("W").unwrap(), ids(&l, x));
}

// ---- 3. Token ids never wrap around u32 ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_codes_are_invalid_argument_not_aliases() {
    let dir = tempfile::tempdir().unwrap();
    built(dir.path());
    let (server, mut c) = serve(dir.path(), config()).await;
    let huge = 4_294_967_275;
    let e = c
        .apply_catalog_update(with_token(
            tokio_stream::iter(vec![upsert("w", &[(1, 3), (4, huge)])]),
            TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("changes[0].sid.tokens[1]"), "{e}");
    let e = c
        .lookup(LookupRequest {
            sids: vec![sid(&[(1, 5), (2, 5), (4, 4_294_967_293)])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = c
        .next_tokens(NextTokensRequest {
            prefixes: vec![sid(&[(1, 5), (4, 4_294_967_285)])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    server.shutdown().await.unwrap();
}

#[test]
fn verify_rejects_a_trie_whose_tokens_break_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::new(dir.path());
    let mut t = SidTable::new(SidHeader::new(
        &Layout::new(vec![8, 8]).unwrap(),
        CollisionMode::Share,
    ));
    t.push("a", &[SidToken::new(1, 0), SidToken::new(2, 7)]);
    build_from_table(&store, &t, "test", None).unwrap();
    // Re-label the layout (manifest checksum recomputed): token 15, once 2:7,
    // now reads as 1:15 — a layer-1 token below a layer-1 token.
    let vdir = store.version_dir(1);
    let mut m = Manifest::read(&vdir).unwrap();
    m.codebook_sizes = vec![16, 8];
    let path = vdir.join("manifest.json");
    make_writable(&path);
    std::fs::write(&path, m.to_bytes()).unwrap();
    let e = store.open_current().err().expect("refused").to_string();
    assert!(e.contains("trie.bin") && e.contains("layer order"), "{e}");
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

// ---- 4. A small SID file cannot make the builder allocate without bound ----

fn sidx_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sidx"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_layouts_are_refused_by_the_cli_and_by_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        (
            "huge-header.tsv",
            "#sidx {\"format\":\"sidx-sids\",\"version\":1,\"codebook_sizes\":[4294967295,4294967295],\"collisions\":\"share\"}\na\t1:1\n",
            "codebook size 4294967295",
        ),
        (
            "huge-code.tsv",
            "a\t1:0\nb\t1:1 4:4294967290\n",
            "4294967290",
        ),
        (
            "too-many-tokens.tsv",
            "#sidx {\"format\":\"sidx-sids\",\"version\":1,\"codebook_sizes\":[65536,65536,65536],\"collisions\":\"share\"}\na\t1:1 2:1 3:1\n",
            "16-bit token ids",
        ),
    ];
    for (name, text, needle) in files {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = sidx_bin()
            .args(["index", "build", "--sids", p.to_str().unwrap(), "--out"])
            .arg(dir.path().join("cli-root"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
    }
    let root = dir.path().join("served");
    built(&root);
    let (server, mut c) = serve(&root, config()).await;
    for (name, _, needle) in files {
        let e = c
            .rebuild(with_token(
                RebuildRequest {
                    sids_path: dir.path().join(name).to_string_lossy().into_owned(),
                    codebooks_path: String::new(),
                },
                TOKEN,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {e}");
        assert!(e.message().contains(needle), "{name}: {e}");
    }
    // The server is alive and still serves version 1.
    let s = c.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(s.version, 1);
    server.shutdown().await.unwrap();
}

// ---- 5. A failed publish leaves no usable version, and no temporaries ----

#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the crash points: cargo test --features failpoints"
)]
#[test]
fn a_failed_or_interrupted_publish_is_garbage_not_a_rollback_target() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("index");
    let tsv = work.path().join("sids.tsv");
    table(CollisionMode::Disambiguate).write(&tsv).unwrap();
    let build = |failpoint: Option<&str>| {
        let mut cmd = sidx_bin();
        cmd.args(["index", "build", "--sids", tsv.to_str().unwrap(), "--out"])
            .arg(&root);
        if let Some(f) = failpoint {
            cmd.env("SIDX_FAILPOINT", f);
        }
        cmd.output().unwrap()
    };
    assert!(build(None).status.success());
    let store = IndexStore::new(&root);
    // Writing CURRENT fails (as on a full disk): exit 1, the new version removed.
    let out = build(Some("current-write-error"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CURRENT"));
    assert_eq!(store.versions().unwrap(), vec![1]);
    assert_eq!(version_dirs(&root), vec!["v00000001"]);
    // A crash between the rename and CURRENT: the complete version is not
    // listed, cannot be rolled back to, and the next writer removes it.
    let out = build(Some("before-current"));
    assert!(!out.status.success());
    assert_eq!(version_dirs(&root), vec!["v00000001", "v00000002"]);
    assert_eq!(store.versions().unwrap(), vec![1], "never published");
    let rb = sidx_bin()
        .args(["index", "rollback", "--index"])
        .arg(&root)
        .args(["--version", "2"])
        .output()
        .unwrap();
    assert!(!rb.status.success(), "rollback to an unpublished version");
    assert!(String::from_utf8_lossy(&rb.stderr).contains("version 2 is not kept"));
    // Leftovers of a kill between writing and renaming CURRENT, and of a mirror.
    std::fs::write(root.join(".CURRENT.tmp-4242"), "v00000002\n").unwrap();
    std::fs::create_dir(root.join(".mirror-v00000007-4242")).unwrap();
    let index = store.open_current().unwrap();
    assert_eq!(index.version(), 1);
    assert_eq!(
        version_dirs(&root),
        vec!["v00000001"],
        "unpublished version swept"
    );
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with(".CURRENT.tmp-") && !n.starts_with(".mirror-")),
        "{names:?}"
    );
    // The next publish takes the number the garbage had, and is published.
    assert!(build(None).status.success());
    assert_eq!(store.versions().unwrap(), vec![1, 2]);
    assert_eq!(store.current().unwrap(), Some(2));
    // A lost CURRENT removes nothing: the versions stay, and a rollback points it back.
    std::fs::remove_file(root.join("CURRENT")).unwrap();
    assert!(matches!(
        store.open_current(),
        Err(IndexError::NoVersion(_))
    ));
    assert_eq!(version_dirs(&root), vec!["v00000001", "v00000002"]);
    store.rollback(2).unwrap();
    assert_eq!(store.open_current().unwrap().version(), 2);
    // Published files are read-only.
    use std::os::unix::fs::PermissionsExt;
    let mut files: Vec<String> = store
        .open_version(2)
        .unwrap()
        .manifest()
        .files
        .iter()
        .map(|f| f.name.clone())
        .collect();
    files.push("manifest.json".into());
    for f in &files {
        let mode = std::fs::metadata(store.version_dir(2).join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444, "{f}");
    }
}

// ---- 7. FetchVersion cannot exhaust memory; replication needs a credential ----

/// A `sidx serve index` child process and its address.
struct ServerProcess {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    fn start(root: &Path, config_toml: &str) -> Self {
        let cfg = root.with_extension("toml");
        std::fs::write(&cfg, config_toml).unwrap();
        let mut cmd = sidx_bin();
        cmd.args([
            "--log",
            "info",
            "serve",
            "index",
            "--addr",
            "127.0.0.1:0",
            "--index",
        ])
        .arg(root)
        .arg("--config")
        .arg(&cfg);
        let (child, addr, log) = common::spawn_listening(cmd);
        Self { child, addr, log }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    async fn client(&self) -> IndexServiceClient<Channel> {
        IndexServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An index of `n` items (long ids, so the files are large).
fn big_index(root: &Path, n: u32) {
    let mut t = SidTable::new(SidHeader::new(
        &Layout::new(vec![256, 256, 256]).unwrap(),
        CollisionMode::Disambiguate,
    ));
    for i in 0..n {
        t.push(
            format!("item-with-a-long-catalog-identifier-{i:012}"),
            &[
                SidToken::new(1, i % 256),
                SidToken::new(2, (i / 256) % 256),
                SidToken::new(3, (i / 65536) % 256),
            ],
        );
    }
    build_from_table(&IndexStore::new(root), &t, "test", None).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_fetch_streams_are_capped_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("index");
    big_index(&root, 200_000);
    let bytes = IndexStore::new(&root)
        .open_current()
        .unwrap()
        .manifest()
        .bytes();
    assert!(bytes > 10 << 20, "a large index ({bytes} bytes)");
    let server = ServerProcess::start(
        &root,
        "max_fetch_streams = 4\nfetch_stall_timeout_s = 2\nreload_interval_ms = 100\n",
    );
    let mut c = server.client().await;
    let before = server.rss_kib();
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        match c.fetch_version(FetchVersionRequest { version: 0 }).await {
            Ok(stream) => open.push(stream.into_inner()),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!((open.len(), refused), (4, 96));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = server.rss_kib().saturating_sub(before);
    assert!(
        grown < 48 << 10,
        "100 unread streams grew RSS by {grown} KiB (index: {} KiB)",
        bytes >> 10
    );
    // Streams that stall are ended, and their permits come back (asked on a
    // second connection: the unread streams hold the first one's window).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut s = server
        .client()
        .await
        .fetch_version(FetchVersionRequest { version: 0 })
        .await
        .expect("a permit is free again")
        .into_inner();
    let mut total = 0u64;
    while let Some(chunk) = s.message().await.unwrap() {
        assert!(chunk.data.len() <= 1 << 20);
        total += chunk.data.len() as u64;
        if chunk.last {
            break;
        }
    }
    assert!(total > bytes, "every file, manifest included");
    drop(open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_needs_its_token_when_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    built(dir.path());
    let (server, mut c) = serve(
        dir.path(),
        ServerConfig {
            replication_token: Some(REPLICATION.into()),
            ..config()
        },
    )
    .await;
    let e = c
        .fetch_version(FetchVersionRequest { version: 0 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let e = c.watch_versions(WatchVersionsRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    for token in [REPLICATION, TOKEN] {
        c.fetch_version(with_token(FetchVersionRequest { version: 0 }, token))
            .await
            .unwrap();
        let mut w = c
            .watch_versions(with_token(WatchVersionsRequest {}, token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(w.message().await.unwrap().unwrap().version, 1);
    }
    // A mirror with the token copies the index; without it, it cannot.
    let local = tempfile::tempdir().unwrap();
    let source = format!("http://{}", server.addr);
    let without = sidx::client::mirror::Mirror::new(source.clone(), IndexStore::new(local.path()));
    assert!(without.sync_once().await.is_err());
    let mirror = sidx::client::mirror::Mirror::new(source, IndexStore::new(local.path()))
        .with_token(Some(REPLICATION.into()));
    assert_eq!(mirror.sync_once().await.unwrap(), 1);
    assert_eq!(
        IndexStore::new(local.path())
            .open_current()
            .unwrap()
            .item_count(),
        200
    );
    // Watches are capped like fetches.
    let capped = ServerConfig {
        max_watch_streams: 2,
        addr: "127.0.0.1:0".parse().unwrap(),
        ..config()
    };
    let (other, mut c2) = serve(dir.path(), capped).await;
    let _a = c2.watch_versions(WatchVersionsRequest {}).await.unwrap();
    let _b = c2.watch_versions(WatchVersionsRequest {}).await.unwrap();
    let e = c2
        .watch_versions(WatchVersionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    other.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

// ---- 8. A served file truncated by another process ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_served_file_is_refused_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("index");
    built(&root);
    let mut server = ServerProcess::start(&root, "reload_interval_ms = 50\n");
    let mut c = server.client().await;
    c.stats(StatsRequest {}).await.unwrap();
    let trie = IndexStore::new(&root).version_dir(1).join("trie.bin");
    make_writable(&trie);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&trie)
        .unwrap()
        .set_len(0)
        .unwrap();
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
    let t0 = Instant::now();
    loop {
        let status = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == ServingStatus::NotServing as i32 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "still SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = c
        .next_tokens(NextTokensRequest {
            prefixes: vec![Sid::default()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert!(
        e.message().contains("refused") && e.message().contains("trie.bin"),
        "{e}"
    );
    assert!(server.alive(), "no SIGBUS");
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("must never be modified"),
        "the log says why"
    );
}

// ---- 9. Codebooks that do not fit the SIDs ----

#[test]
fn codebooks_must_fit_the_sid_layout_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("sids.tsv");
    table(CollisionMode::Disambiguate).write(&tsv).unwrap();
    for (name, shape) in [
        ("rank3.npy", vec![3usize, 16, 4]),
        ("two.npy", vec![2, 8, 4]),
    ] {
        let cb = dir.path().join(name);
        let n = shape.iter().product::<usize>();
        sidx::npy::write(&cb, &shape, &vec![0.5; n]).unwrap();
        let out = sidx_bin()
            .args([
                "index",
                "build",
                "--sids",
                tsv.to_str().unwrap(),
                "--codebooks",
            ])
            .arg(&cb)
            .arg("--out")
            .arg(dir.path().join("root"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(
            err.contains(name) && err.contains("do not fit"),
            "{name}: {err}"
        );
    }
    assert!(
        !dir.path().join("root").join("CURRENT").exists(),
        "nothing published"
    );
}

// ---- 11. Errors keep their cause and their code ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_their_cause_and_map_to_the_right_code() {
    let dir = tempfile::tempdir().unwrap();
    // A format-1 version, whose FSTs are checked at open.
    let store = IndexStore::new(dir.path()).with_format_version(1);
    build_from_table(&store, &table(CollisionMode::Disambiguate), "test", None).unwrap();
    // fst's own reason, not "FST error".
    let v1 = store.version_dir(1);
    let fst = v1.join("sids.fst");
    let mut bytes = std::fs::read(&fst).unwrap();
    let good = bytes.clone();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    make_writable(&fst);
    std::fs::write(&fst, &bytes).unwrap();
    let e = store.open_current().err().unwrap();
    assert!(matches!(e, IndexError::Fst { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("sids.fst") && !text.ends_with("FST error"),
        "{text}"
    );
    std::fs::write(&fst, &good).unwrap();

    let (server, mut c) = serve(dir.path(), config()).await;
    // An unknown delete is NOT_FOUND (a typed error, not message matching).
    let e = c
        .apply_catalog_update(with_token(
            tokio_stream::iter(vec![CatalogChange {
                change: Some(catalog_change::Change::DeleteItemId("nope".into())),
            }]),
            TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert!(e.message().contains("\"nope\""), "{e}");
    // A kept version whose manifest is corrupt is DATA_LOSS; one not kept is NOT_FOUND.
    let manifest = v1.join("manifest.json");
    make_writable(&manifest);
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text = text.replacen("\"test\"", "\"tEst\"", 1);
    std::fs::write(&manifest, text).unwrap();
    let e = c
        .fetch_version(FetchVersionRequest { version: 1 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e}");
    let e = c
        .fetch_version(FetchVersionRequest { version: 9 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    // A manifest naming a file outside its directory is corrupt: FetchVersion
    // does not stream what it points to (found by the index_open fuzz target).
    let mut m: Manifest =
        serde_json::from_slice(&std::fs::read(v1.join("manifest.json")).unwrap()).unwrap();
    m.files.push(sidx::index::FileEntry {
        name: "/etc/hostname".into(),
        bytes: 0,
        crc32c: 0,
    });
    std::fs::write(&manifest, m.to_bytes()).unwrap();
    let e = c
        .fetch_version(FetchVersionRequest { version: 1 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e}");
    assert!(e.message().contains("not a plain name"), "{e}");
    server.shutdown().await.unwrap();
}

// ---- 12. Lookup per entry; both prefix spellings follow the same rules ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_answers_per_entry_and_prefix_forms_agree() {
    let dir = tempfile::tempdir().unwrap();
    let store = built(dir.path());
    let (server, mut c) = serve(dir.path(), config()).await;
    let r = c
        .lookup(LookupRequest {
            item_ids: vec!["sku-3".into(), "missing".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.by_item[0].sid.is_some());
    assert_eq!(
        (r.by_item[1].item_id.as_str(), &r.by_item[1].sid),
        ("missing", &None)
    );

    // Layers out of order: INVALID_ARGUMENT in both spellings.
    let index = store.open_current().unwrap();
    let l = index.layout();
    let id = |layer, code| l.token_id(SidToken::new(layer, code)).unwrap();
    let e = c
        .next_tokens(NextTokensRequest {
            prefix_ids: vec![TokenIds {
                ids: vec![id(2, 1), id(1, 1)],
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("prefix_ids[0].ids[1]"), "{e}");
    let e = c
        .next_tokens(NextTokensRequest {
            prefixes: vec![sid(&[(2, 1), (1, 1)])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("prefixes[0].tokens[1]"), "{e}");
    // A well-formed prefix no SID starts with is valid: false in both.
    let absent = [(1u8, 7u32), (2, 7), (3, 7)];
    let r = c
        .next_tokens(NextTokensRequest {
            prefix_ids: vec![TokenIds {
                ids: absent.iter().map(|&(a, b)| id(a, b)).collect(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let r2 = c
        .next_tokens(NextTokensRequest {
            prefixes: vec![sid(&absent.map(|(a, b)| (a as u32, b)))],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.results[0].valid && !r2.results[0].valid);
    server.shutdown().await.unwrap();
}

#[test]
fn a_mirrored_copy_replaces_an_unpublished_leftover_of_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let source = IndexStore::new(&dir.path().join("source"));
    build_from_table(&source, &table(CollisionMode::Disambiguate), "a", None).unwrap();
    build_from_table(&source, &table(CollisionMode::Share), "b", None).unwrap();
    let local = IndexStore::new(&dir.path().join("local"));
    build_from_table(&local, &table(CollisionMode::Disambiguate), "a", None).unwrap();
    // A crash after the rename left a v2 that was never published here.
    std::fs::create_dir(local.version_dir(2)).unwrap();
    std::fs::write(local.version_dir(2).join("trie.bin"), b"half").unwrap();
    let staged = dir.path().join("local").join(".mirror-v00000002-1");
    std::fs::create_dir(&staged).unwrap();
    for e in std::fs::read_dir(source.version_dir(2)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), staged.join(e.file_name())).unwrap();
    }
    local.publish_copy(&staged, 2).unwrap();
    assert_eq!(local.current().unwrap(), Some(2));
    assert_eq!(local.open_current().unwrap().manifest().source, "b");
}
