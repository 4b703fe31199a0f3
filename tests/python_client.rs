//! The Python client example (python/sidx_client.py, grpcio) against a real
//! server, as a ranking service would call it. Needs the project venv:
//! `scripts/setup-python.sh` (the README's test command runs it).

mod common;

use sidx::index::{IndexStore, build_from_table};
use sidx::server::{ServerConfig, start_index_server};
use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable, Token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_example_talks_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(vec![8, 8, 8]).unwrap();
    let mut table = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
    for i in 0..200u32 {
        table.push(
            format!("sku-{i}"),
            &[
                Token::new(1, i % 8),
                Token::new(2, (i / 8) % 8),
                Token::new(3, i % 5),
            ],
        );
    }
    build_from_table(&IndexStore::new(dir.path()), &table, "test", None).unwrap();
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        drain_timeout_s: 1,
        ..ServerConfig::default()
    };
    let server = start_index_server(IndexStore::new(dir.path()), config, std::future::pending())
        .await
        .unwrap();
    let addr = server.addr.to_string();
    let v = common::python_example("sidx_client.py", &["--addr", &addr, "--item", "sku-42"]).await;
    assert_eq!(v["health"], "SERVING");
    assert_eq!(v["items"], 200);
    // sku-42: 42 % 8 = 2, 42 / 8 % 8 = 5, 42 % 5 = 2.
    assert_eq!(v["sid"], "1:2 2:5 3:2");
    let same: Vec<String> = table
        .iter()
        .filter(|(_, s)| *s == table.sid(42))
        .map(|(id, _)| id.to_owned())
        .collect();
    let mut got: Vec<String> = serde_json::from_value(v["items_with_sid"].clone()).unwrap();
    got.sort();
    let mut want = same;
    want.sort();
    assert_eq!(got, want, "shared SIDs return every item");
    assert_eq!(v["allowed_counts"][0], 8, "8 layer-1 codes at the root");
    assert_eq!(
        v["complete"],
        serde_json::json!([false, false, false, true])
    );
    assert!(
        v["bad_request"]
            .as_str()
            .unwrap()
            .starts_with("INVALID_ARGUMENT: prefixes[0]"),
        "{v}"
    );
    server.shutdown().await.unwrap();
}
