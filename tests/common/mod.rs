//! Shared by the tests: random variable-length SIDs over a small layout (the
//! property tests), health checks of a running server (the gRPC tests), and
//! running the `sidx` binary (the command-line tests).
#![allow(dead_code)]

use proptest::prelude::*;
use sidx::sid::Token;

/// Codebook sizes of the layout the property tests use.
pub const SIZES: [u32; 3] = [4, 3, 5];

/// A random SID: layers 1 and 3 always, layer 2 sometimes, a disambiguation
/// token (code below `dis_codes`) sometimes.
pub fn sid_strategy(dis_codes: u32) -> impl Strategy<Value = Vec<Token>> {
    (
        0..SIZES[0],
        prop::option::of(0..SIZES[1]),
        0..SIZES[2],
        prop::option::weighted(0.2, 0..dis_codes),
    )
        .prop_map(|(a, b, c, d)| {
            let mut s = vec![Token::new(1, a)];
            if let Some(b) = b {
                s.push(Token::new(2, b));
            }
            s.push(Token::new(3, c));
            if let Some(d) = d {
                s.push(Token::new(4, d));
            }
            s
        })
}

use std::time::Duration;

use sidx::server::RunningServer;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A plaintext channel to a server on loopback.
pub async fn connect(server: &RunningServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The serving status a server reports for `service` ("" = the whole server).
pub async fn health(server: &RunningServer, service: &str) -> i32 {
    let mut h = HealthClient::new(connect(server).await);
    h.check(HealthCheckRequest {
        service: service.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .status
}

pub async fn wait_for_health(server: &RunningServer, want: ServingStatus) {
    for _ in 0..100 {
        if health(server, "").await == want as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("health never became {want:?}");
}

/// Runs a Python client example from python/ with the project venv's Python
/// (or `SIDX_PYTHON`); returns the JSON object it prints.
pub async fn python_example(script: &str, args: &[&str]) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = std::env::var_os("SIDX_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup-python.sh (or set SIDX_PYTHON)",
        py.display()
    );
    let out = tokio::process::Command::new(&py)
        .arg(root.join("python").join(script))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The body and headers of `GET path` over plain HTTP/1.1.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Spawns `cmd` (a `sidx serve …`) with stderr piped and waits for its
/// "… service on ADDR" line; returns the child and ADDR. The rest of stderr
/// is collected into the returned log (a thread drains it).
pub fn spawn_listening(
    mut cmd: std::process::Command,
) -> (
    std::process::Child,
    String,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    use std::io::BufRead;
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "server exited early");
        if let Some(rest) = line.split(" service on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let log = std::sync::Arc::new(std::sync::Mutex::new(line));
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        let mut line = String::new();
        while err.read_line(&mut line).unwrap_or(0) > 0 {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    (child, addr, log)
}

/// Runs the `sidx` binary with `args` (its log at warn).
pub fn sidx(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sidx"))
        .args(["--log", "warn"])
        .args(args)
        .output()
        .expect("sidx runs")
}

pub fn p(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// Asserts failure with a message containing every `needle`, and no panic.
pub fn fails_with(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    assert!(!err.contains("panicked"), "a panic: {err}");
}
