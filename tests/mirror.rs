//! Mirroring an index from a running index service into a local root:
//! the first copy, following new versions and rollbacks, and a dead source.

use std::path::Path;
use std::time::Duration;

use sidx::client::mirror::Mirror;
use sidx::index::{Index, IndexStore, build_from_table};
use sidx::server::{ServerConfig, start_index_server};
use sidx::sid::SidTable;

fn publish(store: &IndexStore, items: usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generator/sids.tsv");
    let table = SidTable::read(&path).unwrap();
    let mut sub = SidTable::new(table.header().clone());
    for (id, sid) in table.iter().take(items) {
        sub.push(id, sid);
    }
    build_from_table(store, &sub, "mirror test", None).unwrap();
}

async fn wait_for_current(store: &IndexStore, version: u64) {
    for _ in 0..250 {
        if store.current().unwrap() == Some(version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the mirror never reached version {version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_and_follows_the_served_version() {
    let dir = tempfile::tempdir().unwrap();
    let source = IndexStore::new(&dir.path().join("source"));
    publish(&source, 100);
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        drain_timeout_s: 1,
        reload_interval_ms: 50,
        ..ServerConfig::default()
    };
    let server = start_index_server(source.clone(), config, std::future::pending())
        .await
        .unwrap();
    let url = format!("http://{}", server.addr);
    let local = IndexStore::new(&dir.path().join("local"));
    let mirror = Mirror::new(url.clone(), local.clone());
    assert_eq!(mirror.sync_once().await.unwrap(), 1);
    let copy = Index::open(&local.version_dir(1)).unwrap();
    assert_eq!((copy.version(), copy.item_count()), (1, 100));
    // A second sync of the same version changes nothing.
    assert_eq!(mirror.sync_once().await.unwrap(), 1);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follow = tokio::spawn(Mirror::new(url, local.clone()).run(async {
        let _ = stop_rx.await;
    }));
    publish(&source, 300);
    wait_for_current(&local, 2).await;
    assert_eq!(local.open_current().unwrap().item_count(), 300);
    // A rollback at the source is followed with the copy already here.
    source.rollback(1).unwrap();
    wait_for_current(&local, 1).await;
    assert_eq!(local.open_current().unwrap().item_count(), 100);
    stop_tx.send(()).unwrap();
    follow.await.unwrap();
    // No staging leftovers.
    let leftovers: Vec<_> = std::fs::read_dir(local.root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mirror"))
        .collect();
    assert!(leftovers.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dead_source_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let local = IndexStore::new(dir.path());
    let e = Mirror::new("http://127.0.0.1:1", local.clone())
        .sync_once()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("http://127.0.0.1:1"), "{e}");
    assert_eq!(local.current().unwrap(), None);
}
