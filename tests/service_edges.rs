//! The service's edges: reflection (what grpcurl uses), TLS and mTLS, and
//! SIGTERM with a drain deadline on the real binary.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use sidx::index::{IndexStore, build_from_table};
use sidx::proto::v1::index_service_client::IndexServiceClient;
use sidx::proto::v1::*;
use sidx::server::{ServerConfig, TlsConfig, start_index_server};
use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable, Token};
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn index(dir: &Path) {
    let layout = Layout::new(vec![8, 8, 8]).unwrap();
    let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
    for i in 0..100u32 {
        t.push(
            format!("i{i}"),
            &[
                Token::new(1, i % 8),
                Token::new(2, i / 8 % 8),
                Token::new(3, i % 3),
            ],
        );
    }
    build_from_table(&IndexStore::new(dir), &t, "test", None).unwrap();
}

fn local() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        drain_timeout_s: 1,
        ..ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let dir = tempfile::tempdir().unwrap();
    index(dir.path());
    let server = start_index_server(IndexStore::new(dir.path()), local(), std::future::pending())
        .await
        .unwrap();
    let mut c = ServerReflectionClient::new(common::connect(&server).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"sidx.v1.IndexService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    index(&dir.path().join("idx"));
    let server_cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let client_cert = rcgen::generate_simple_self_signed(vec!["ranker".into()]).unwrap();
    let w = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let tls = TlsConfig {
        cert: w("server.pem", server_cert.cert.pem()),
        key: w("server.key", server_cert.signing_key.serialize_pem()),
        client_ca: Some(w("client-ca.pem", client_cert.cert.pem())),
    };
    let config = ServerConfig {
        tls: Some(tls),
        ..local()
    };
    let server = start_index_server(
        IndexStore::new(&dir.path().join("idx")),
        config,
        std::future::pending(),
    )
    .await
    .unwrap();
    let url = format!("https://localhost:{}", server.addr.port());
    let base = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_cert.cert.pem()))
        .domain_name("localhost");

    // With a client certificate the server trusts: served.
    let with_id = base.clone().identity(Identity::from_pem(
        client_cert.cert.pem(),
        client_cert.signing_key.serialize_pem(),
    ));
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(with_id)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let s = IndexServiceClient::new(channel)
        .stats(StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.items, 100);

    // Without one: refused by mTLS.
    let endpoint = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(base)
        .unwrap();
    assert!(
        refused(endpoint).await,
        "a client without a certificate must be refused"
    );

    // The client module's builder speaks the same TLS: CA plus identity is
    // served, the CA alone is refused by mTLS.
    let connect = sidx::client::Connect::new(&url).tls_ca(server_cert.cert.pem().into_bytes());
    let channel = connect
        .clone()
        .identity(
            client_cert.cert.pem().into_bytes(),
            client_cert.signing_key.serialize_pem().into_bytes(),
        )
        .channel()
        .await
        .unwrap();
    let s = sidx::client::index_client(channel)
        .stats(StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.items, 100);
    assert!(
        refused(connect.endpoint().unwrap()).await,
        "the client module without an identity must be refused"
    );

    // Plain text against the TLS port fails too.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{}", server.addr.port())).unwrap();
    assert!(
        refused(plain).await,
        "plain text against the TLS port must fail"
    );
    server.shutdown().await.unwrap();
}

/// Whether connecting through `endpoint`, or the first call over it, fails.
async fn refused(endpoint: tonic::transport::Endpoint) -> bool {
    match endpoint.connect().await {
        Err(_) => true,
        Ok(ch) => IndexServiceClient::new(ch)
            .stats(StatsRequest {})
            .await
            .is_err(),
    }
}

#[test]
fn sigterm_drains_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    index(dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sidx"))
        .args([
            "--log",
            "info",
            "serve",
            "index",
            "--index",
            dir.path().to_str().unwrap(),
        ])
        .args(["--addr", "127.0.0.1:0", "--drain-timeout-s", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0,
            "server exited early"
        );
        if line.contains("sidx index service on") {
            break;
        }
    }
    let t0 = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "graceful exit, got {exit}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(
        rest.contains("shutdown signal received") && rest.contains("draining"),
        "{rest}"
    );
}

/// `serve index --seed-sids`: an empty root gets its first version from the
/// SID file and serves it; a root that has a version keeps it.
#[tokio::test]
async fn an_empty_root_is_seeded_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("index");
    let sids = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generator/sids.tsv");
    let serve = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sidx"));
        cmd.args(["--log", "info", "serve", "index", "--addr", "127.0.0.1:0"])
            .arg("--index")
            .arg(&root)
            .arg("--seed-sids")
            .arg(&sids);
        common::spawn_listening(cmd)
    };
    for round in 0..2 {
        let (mut child, addr, _log) = serve();
        let mut c = IndexServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let stats = c.stats(StatsRequest {}).await.unwrap().into_inner();
        assert_eq!(stats.version, 1, "round {round}: the seed version");
        assert_eq!(stats.items, 4344, "round {round}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            IndexStore::new(&root).versions().unwrap().len(),
            1,
            "round {round}: seeded once, kept after"
        );
    }
}
