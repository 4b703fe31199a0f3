//! The generator's health is the truth: it never swaps to an index version
//! its model cannot decode (it keeps serving the last one that fits, and
//! says so in Stats, the log and the metrics), and a dead model thread turns
//! health NOT_SERVING.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wait_for_health;
use sidx::catalog::CatalogUpdate;
use sidx::generate::{Generator, GeneratorLimits, OnnxModel, RuntimeOptions};
use sidx::index::{IndexStore, build_from_table};
use sidx::proto::v1::generator_service_client::GeneratorServiceClient;
use sidx::proto::v1::{GenerateRequest, StatsRequest};
use sidx::server::{ServerConfig, start_generator_server};
use sidx::sid::{SidHeader, SidTable, Token};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/generator")
        .join(name)
}

fn request() -> GenerateRequest {
    GenerateRequest {
        history_item_ids: vec!["9".into(), "10".into()],
        beam_width: Some(10),
        top_k: Some(5),
        ..GenerateRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_the_model_cannot_decode_is_refused_and_the_old_one_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::new(dir.path());
    let table = SidTable::read(&fixture("sids.tsv")).unwrap();
    build_from_table(&store, &table, "fixture", None).unwrap();
    let model =
        OnnxModel::open(&fixture("model_kv.onnx"), None, &RuntimeOptions::default()).unwrap();
    let generator = Arc::new(
        Generator::start(
            model,
            &store.open_current().unwrap(),
            GeneratorLimits::default(),
        )
        .unwrap(),
    );
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        reload_interval_ms: 50,
        drain_timeout_s: 1,
        ..ServerConfig::default()
    };
    let server = start_generator_server(store.clone(), config, generator, std::future::pending())
        .await
        .unwrap();
    wait_for_health(&server, ServingStatus::Serving).await;
    let mut c = GeneratorServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    assert_eq!(
        c.generate(request())
            .await
            .unwrap()
            .into_inner()
            .index_version,
        1
    );

    // `sidx index update` accepts a disambiguation code the model never saw.
    let mut up = SidTable::new(SidHeader::new(&table.layout(), table.header().collisions));
    up.push(
        "new",
        &[
            Token::new(1, 12),
            Token::new(2, 21),
            Token::new(3, 1),
            Token::new(4, 40),
        ],
    );
    let s = CatalogUpdate {
        upsert_sids: Some(up),
        ..CatalogUpdate::default()
    }
    .apply(&store)
    .unwrap();
    assert_eq!(s.build.version, 2);
    let t0 = Instant::now();
    let stats = loop {
        let stats = c.stats(StatsRequest {}).await.unwrap().into_inner();
        if stats.refused_version == 2 {
            break stats;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "never refused: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stats.version, 1, "the last version that fits is served");
    assert!(stats.refused_reason.contains("disambiguation"), "{stats:?}");
    // Generate keeps working on version 1, and health says SERVING truthfully.
    let r = c.generate(request()).await.unwrap().into_inner();
    assert_eq!(r.index_version, 1);
    assert!(r.items.len() >= 5);
    assert_eq!(
        common::health(&server, "").await,
        ServingStatus::Serving as i32
    );
    let metrics = common::http_get(server.metrics_addr.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("sidx_index_refused_version 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sidx_index_refused_versions_total 1"),
        "{metrics}"
    );
    server.shutdown().await.unwrap();
}

#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the crash points: cargo test --features failpoints"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_model_thread_turns_health_not_serving() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::new(dir.path());
    build_from_table(
        &store,
        &SidTable::read(&fixture("sids.tsv")).unwrap(),
        "fixture",
        None,
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sidx"));
    cmd.args([
        "--log",
        "info",
        "serve",
        "generator",
        "--addr",
        "127.0.0.1:0",
    ])
    .args(["--index", dir.path().to_str().unwrap()])
    .args(["--model", fixture("model_kv.onnx").to_str().unwrap()])
    .env("SIDX_FAILPOINT", "model-thread-panic");
    let (mut child, addr, _log) = common::spawn_listening(cmd);
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = |h: tonic_health::pb::HealthCheckResponse| h.status;
    let check = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    assert_eq!(
        status(health.check(check.clone()).await.unwrap().into_inner()),
        ServingStatus::Serving as i32
    );
    // The first request reaches the model thread, which dies.
    let e = GeneratorServiceClient::new(channel)
        .generate(request())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    let t0 = Instant::now();
    while status(health.check(check.clone()).await.unwrap().into_inner())
        != ServingStatus::NotServing as i32
    {
        assert!(t0.elapsed() < Duration::from_secs(5), "still SERVING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
