//! Prometheus metrics: request counts and latency histograms by method and
//! status code, and gauges of the served index; rendered as text on a
//! separate HTTP port.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

/// All metrics of one service process.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, &'static str), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    pub index_version: AtomicU64,
    pub index_sids: AtomicU64,
    pub index_items: AtomicU64,
    pub index_bytes: AtomicU64,
    pub swaps: AtomicU64,
    /// Published versions refused (corrupt, changed on disk, or — on a
    /// generator — not decodable by its model), and the last one refused.
    pub refused_versions: AtomicU64,
    pub refused_version: AtomicU64,
    /// Replication streams (FetchVersion, WatchVersions) open now.
    pub open_fetches: AtomicU64,
    pub open_watches: AtomicU64,
    /// Mirrors gRPC health: an index is loaded and the server is not draining
    /// (`GET /ready` on the metrics port, for probes that cannot speak gRPC over TLS).
    pub ready: std::sync::atomic::AtomicBool,
    /// Generator: SIDs returned, invalid ones (unconstrained), decoding steps,
    /// and nanoseconds spent queued, in the model, and in the constrained search.
    pub generated_sids: AtomicU64,
    pub generated_invalid_sids: AtomicU64,
    pub generator_steps: AtomicU64,
    pub generator_queue_ns: AtomicU64,
    pub generator_model_ns: AtomicU64,
    pub generator_search_ns: AtomicU64,
}

/// The name of a gRPC code as Prometheus labels spell it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Metrics {
    /// Counts one finished request and its latency.
    pub fn observe(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry((method.to_owned(), code_name(code))).or_default() += 1;
        drop(r);
        let secs = elapsed.as_secs_f64();
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.entry(method.to_owned()).or_default();
        if let Some(b) = BUCKETS.iter().position(|&b| secs <= b) {
            h.counts[b] += 1;
        }
        h.sum += secs;
        h.total += 1;
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP sidx_grpc_requests_total gRPC requests by method and status code.\n");
        s.push_str("# TYPE sidx_grpc_requests_total counter\n");
        for ((m, c), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "sidx_grpc_requests_total{{method=\"{m}\",code=\"{c}\"}} {n}"
            );
        }
        s.push_str("# HELP sidx_grpc_request_seconds Latency of gRPC requests by method.\n");
        s.push_str("# TYPE sidx_grpc_request_seconds histogram\n");
        for (m, h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let mut cum = 0;
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                cum += c;
                let _ = writeln!(
                    s,
                    "sidx_grpc_request_seconds_bucket{{method=\"{m}\",le=\"{b}\"}} {cum}"
                );
            }
            let _ = writeln!(
                s,
                "sidx_grpc_request_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {}",
                h.total
            );
            let _ = writeln!(
                s,
                "sidx_grpc_request_seconds_sum{{method=\"{m}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                s,
                "sidx_grpc_request_seconds_count{{method=\"{m}\"}} {}",
                h.total
            );
        }
        let gauges = [
            (
                "sidx_index_version",
                "Catalog version of the served index.",
                &self.index_version,
            ),
            (
                "sidx_index_sids",
                "Distinct SIDs in the served index.",
                &self.index_sids,
            ),
            (
                "sidx_index_items",
                "Items in the served index.",
                &self.index_items,
            ),
            (
                "sidx_index_bytes",
                "Bytes of the served index's files.",
                &self.index_bytes,
            ),
            (
                "sidx_index_swaps_total",
                "Index versions swapped in since start.",
                &self.swaps,
            ),
            (
                "sidx_index_refused_versions_total",
                "Published versions this server refused to serve.",
                &self.refused_versions,
            ),
            (
                "sidx_index_refused_version",
                "The last version refused (0 = none).",
                &self.refused_version,
            ),
            (
                "sidx_fetch_streams",
                "FetchVersion streams open now.",
                &self.open_fetches,
            ),
            (
                "sidx_watch_streams",
                "WatchVersions streams open now.",
                &self.open_watches,
            ),
            (
                "sidx_generated_sids_total",
                "SIDs returned by Generate.",
                &self.generated_sids,
            ),
            (
                "sidx_generated_invalid_sids_total",
                "Returned SIDs no item has (unconstrained decoding).",
                &self.generated_invalid_sids,
            ),
            (
                "sidx_generator_steps_total",
                "Beam-search steps (model calls) run.",
                &self.generator_steps,
            ),
            (
                "sidx_generator_queue_nanoseconds_total",
                "Time requests waited for the model thread.",
                &self.generator_queue_ns,
            ),
            (
                "sidx_generator_model_nanoseconds_total",
                "Time inside the ONNX model.",
                &self.generator_model_ns,
            ),
            (
                "sidx_generator_search_nanoseconds_total",
                "Time in the constrained search (trie lookups, selection).",
                &self.generator_search_ns,
            ),
        ];
        for (name, help, v) in gauges {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        s
    }
}

/// Serves `GET /metrics` until `shutdown` resolves; returns the bound address.
pub async fn serve(
    metrics: std::sync::Arc<Metrics>,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let ready = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let m = metrics.clone();
                async move { m.render() }
            }),
        )
        .route(
            "/ready",
            axum::routing::get(move || {
                let m = ready.clone();
                async move {
                    if m.ready.load(Ordering::Relaxed) {
                        (http::StatusCode::OK, "ready\n")
                    } else {
                        (http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_histograms_and_gauges() {
        let m = Metrics::default();
        m.observe("NextTokens", tonic::Code::Ok, Duration::from_micros(70));
        m.observe("NextTokens", tonic::Code::Ok, Duration::from_millis(3));
        m.observe("Lookup", tonic::Code::NotFound, Duration::from_micros(10));
        m.index_version.store(7, Ordering::Relaxed);
        let t = m.render();
        assert!(
            t.contains("sidx_grpc_requests_total{method=\"NextTokens\",code=\"OK\"} 2"),
            "{t}"
        );
        assert!(t.contains("sidx_grpc_requests_total{method=\"Lookup\",code=\"NOT_FOUND\"} 1"));
        assert!(
            t.contains("sidx_grpc_request_seconds_bucket{method=\"NextTokens\",le=\"0.0001\"} 1")
        );
        assert!(
            t.contains("sidx_grpc_request_seconds_bucket{method=\"NextTokens\",le=\"+Inf\"} 2")
        );
        assert!(t.contains("sidx_index_version 7"));
    }
}
