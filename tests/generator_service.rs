//! The fixture generator served over gRPC on 127.0.0.1:0: the Rust client
//! and the Python client example, constrained and unconstrained decoding,
//! bad requests, health, and an index version swap under the generator.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{health, wait_for_health};
use sidx::generate::{Generator, GeneratorLimits, OnnxModel, RuntimeOptions};
use sidx::index::{IndexStore, build_from_table};
use sidx::proto::v1::generator_service_client::GeneratorServiceClient;
use sidx::proto::v1::{GenerateRequest, GenerateResponse};
use sidx::server::{RunningServer, ServerConfig, start_generator_server};
use sidx::sid::SidTable;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/generator")
        .join(name)
}

/// The fixture's catalog (its first `limit` items) published into `store`.
fn publish(store: &IndexStore, limit: usize) {
    let table = SidTable::read(&fixture("sids.tsv")).unwrap();
    let mut sub = SidTable::new(table.header().clone());
    for (id, sid) in table.iter().take(limit) {
        sub.push(id, sid);
    }
    build_from_table(store, &sub, "fixture", None).unwrap();
}

async fn serve(
    dir: &Path,
) -> (
    RunningServer,
    GeneratorServiceClient<tonic::transport::Channel>,
) {
    let store = IndexStore::new(dir);
    publish(&store, usize::MAX);
    let model =
        OnnxModel::open(&fixture("model_kv.onnx"), None, &RuntimeOptions::default()).unwrap();
    let limits = GeneratorLimits {
        max_beam: 64,
        ..GeneratorLimits::default()
    };
    let generator =
        Arc::new(Generator::start(model, &store.open_current().unwrap(), limits).unwrap());
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        drain_timeout_s: 1,
        reload_interval_ms: 50,
        ..ServerConfig::default()
    };
    let server = start_generator_server(store, config, generator, std::future::pending())
        .await
        .unwrap();
    wait_for_health(&server, ServingStatus::Serving).await;
    let client = GeneratorServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    (server, client)
}

fn request(history: &[&str], beam: u32, top_k: u32, constrained: bool) -> GenerateRequest {
    GenerateRequest {
        history_item_ids: history.iter().map(|s| s.to_string()).collect(),
        beam_width: Some(beam),
        top_k: Some(top_k),
        constrained: Some(constrained),
        ..GenerateRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_over_grpc_constrained_unconstrained_and_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut client) = serve(dir.path()).await;
    assert_eq!(
        health(&server, "sidx.v1.GeneratorService").await,
        ServingStatus::Serving as i32
    );
    let index = server.state.current().unwrap();

    let r: GenerateResponse = client
        .generate(request(&["9", "10", "11", "12"], 20, 10, true))
        .await
        .unwrap()
        .into_inner();
    assert!(r.items.len() >= 10);
    assert_eq!(r.invalid_sids, 0);
    assert_eq!(r.index_version, index.version());
    assert!(r.steps >= 1 && r.batch_size >= 1);
    for it in &r.items {
        assert!(
            index.sid(&it.item_id).is_some(),
            "constrained results are catalog items"
        );
    }
    assert!(r.items.windows(2).all(|w| w[0].score >= w[1].score));

    // Unconstrained: every SID without an item is counted and has an empty item id.
    let mut invalid_seen = 0;
    for history in [
        &["0"][..],
        &["100", "200"],
        &["9", "10", "11", "12"],
        &["3000"],
    ] {
        let r = client
            .generate(request(history, 30, 30, false))
            .await
            .unwrap()
            .into_inner();
        let empty = r.items.iter().filter(|i| i.item_id.is_empty()).count();
        assert_eq!(empty as u32, r.invalid_sids);
        invalid_seen += empty;
    }
    // The defaults apply when beam and top-k are unset.
    let defaults = GenerateRequest {
        beam_width: None,
        top_k: None,
        ..request(&["5"], 1, 1, true)
    };
    let r = client.generate(defaults).await.unwrap().into_inner();
    assert!(r.items.len() >= GeneratorLimits::default().default_top_k);
    eprintln!("invalid SIDs seen unconstrained: {invalid_seen}");

    let code = |r: Result<tonic::Response<GenerateResponse>, tonic::Status>| {
        let s = r.expect_err("must be refused");
        (s.code(), s.message().to_string())
    };
    let (c, m) = code(client.generate(request(&["0", "nope"], 10, 5, true)).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(
        m.contains("history_item_ids") && m.contains("[1]") && m.contains("nope"),
        "{m}"
    );
    let (c, m) = code(client.generate(request(&[], 10, 5, true)).await);
    assert_eq!(
        (c, m.contains("history_item_ids")),
        (Code::InvalidArgument, true),
        "{m}"
    );
    let (c, m) = code(client.generate(request(&["0"], 65, 5, true)).await);
    assert_eq!(
        (c, m.contains("beam_width")),
        (Code::InvalidArgument, true),
        "{m}"
    );
    for (beam, top_k, field) in [(0, 1, "beam_width"), (5, 0, "top_k")] {
        let (c, m) = code(client.generate(request(&["0"], beam, top_k, true)).await);
        assert_eq!((c, m.contains(field)), (Code::InvalidArgument, true), "{m}");
    }
    let (c, m) = code(client.generate(request(&["0"], 5, 6, true)).await);
    assert_eq!(
        (c, m.contains("top_k")),
        (Code::InvalidArgument, true),
        "{m}"
    );
    let both = GenerateRequest {
        history_token_ids: vec![1],
        ..request(&["0"], 5, 5, true)
    };
    assert_eq!(code(client.generate(both).await).0, Code::InvalidArgument);
    // The connection still works.
    assert!(client.generate(request(&["0"], 5, 5, true)).await.is_ok());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_follows_index_version_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut client) = serve(dir.path()).await;
    let before = client
        .generate(request(&["1"], 20, 10, true))
        .await
        .unwrap()
        .into_inner();
    // Publish a catalog of the first 300 items only; the server picks it up.
    publish(&IndexStore::new(dir.path()), 300);
    let mut after = None;
    for _ in 0..100 {
        let r = client
            .generate(request(&["1"], 20, 10, true))
            .await
            .unwrap()
            .into_inner();
        if r.index_version > before.index_version {
            after = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = after.expect("the new version was never used");
    let allowed: std::collections::HashSet<String> = (0..300).map(|i| i.to_string()).collect();
    assert!(
        after.items.iter().all(|i| allowed.contains(&i.item_id)),
        "only items of the new version"
    );
    // An item that left the catalog is now an unknown history item.
    let gone = client
        .generate(request(&["4000"], 20, 10, true))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::InvalidArgument);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_generate_client_example() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = serve(dir.path()).await;
    let addr = server.addr.to_string();
    let v = common::python_example(
        "sidx_generate_client.py",
        &[
            "--addr",
            &addr,
            "--history",
            "9,10,11,12",
            "--beam",
            "30",
            "--top-k",
            "30",
        ],
    )
    .await;
    assert_eq!(v["health"], "SERVING");
    let index = server.state.current().unwrap();
    assert_eq!(v["constrained"]["invalid_sids"], 0);
    for it in v["constrained"]["items"].as_array().unwrap() {
        assert!(index.sid(it["item_id"].as_str().unwrap()).is_some());
    }
    let un = v["unconstrained"]["items"].as_array().unwrap();
    let empty = un.iter().filter(|i| i["item_id"] == "").count();
    assert_eq!(
        v["unconstrained"]["invalid_sids"].as_u64().unwrap() as usize,
        empty
    );
    assert!(
        v["bad_request"]
            .as_str()
            .unwrap()
            .starts_with("INVALID_ARGUMENT: history_item_ids"),
        "{v}"
    );
    server.shutdown().await.unwrap();
}

/// `sidx serve generator --mirror-from`: the real binary copies the index
/// from an index service, serves Generate, and exits cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_generator_binary_mirrors_the_index_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let source = IndexStore::new(&dir.path().join("source"));
    publish(&source, usize::MAX);
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        drain_timeout_s: 1,
        ..ServerConfig::default()
    };
    let index_server = sidx::server::start_index_server(source, config, std::future::pending())
        .await
        .unwrap();
    let local = dir.path().join("local");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sidx"));
    cmd.args([
        "--log",
        "info",
        "serve",
        "generator",
        "--addr",
        "127.0.0.1:0",
    ])
    .args(["--index", local.to_str().unwrap(), "--drain-timeout-s", "2"])
    .args(["--model", fixture("model_kv.onnx").to_str().unwrap()])
    .args(["--mirror-from", &format!("http://{}", index_server.addr)]);
    let (mut child, addr, log) = common::spawn_listening(cmd);
    let line = log.lock().unwrap().clone();
    assert!(line.contains("cpu execution provider"), "{line}");
    let mut client = GeneratorServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let r = client
        .generate(request(&["9", "10"], 10, 5, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.index_version, 1);
    assert!(r.items.len() >= 5);
    assert_eq!(IndexStore::new(&local).current().unwrap(), Some(1));
    // `sidx probe` (what `helm test` runs) against both services.
    let probe = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidx"))
        .args([
            "probe",
            "--index",
            &index_server.addr.to_string(),
            "--generator",
            &addr,
        ])
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(
        out.contains("index") && out.contains("generator") && out.contains("SERVING"),
        "{out}"
    );
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidx"))
        .args(["probe", "--generator", &addr, "--history", "no-such-item"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t0 = std::time::Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "graceful exit, got {exit}");
    index_server.shutdown().await.unwrap();
}
