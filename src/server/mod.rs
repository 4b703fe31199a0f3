//! gRPC services over tonic: health (NOT_SERVING until an index is loaded and
//! verified), reflection (v1 and v1alpha), message-size limits, a server-side
//! deadline, process-wide load shedding, HTTP/2 keepalive and connection age,
//! optional TLS/mTLS, an admin token, tracing spans, Prometheus metrics, and
//! graceful shutdown with a drain deadline.

pub mod config;
mod convert;
mod generator_service;
mod index_service;
mod limits;
pub mod metrics;
mod state;
mod status;
mod stream_end;
pub mod validate;

pub use config::{ServerConfig, TlsConfig};
pub use generator_service::{GENERATOR_SERVICE_NAME, GeneratorServiceImpl};
pub use index_service::{IndexServiceImpl, SERVICE_NAME};
pub use state::{Acceptor, IndexState, Refusal};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::Router;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tower::layer::util::Stack;

use crate::generate::Generator;
use crate::index::IndexStore;
use crate::proto::v1::generator_service_server::GeneratorServiceServer;
use crate::proto::v1::index_service_server::IndexServiceServer;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<IndexState>,
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// Starts a graceful shutdown and waits for it (bounded by the drain deadline).
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops (after its shutdown signal).
    pub async fn wait(self) -> Result<(), ServeError> {
        self.join
            .await
            .map_err(|e| ServeError::Config(format!("server task failed: {e}")))?
    }
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is
/// called (inside a runtime), not when the future is first polled: a signal
/// that arrives between start-up and the first poll is not lost (nor does it
/// kill the process with the default action).
pub fn termination() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn next(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let (term, int) = handlers;
            tokio::select! {
                _ = next(term) => {}
                _ = next(int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received");
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Io {
        what: format!("{what} {}", path.display()),
        source,
    })
}

/// Starts the index service on `config.addr` (port 0 picks one) serving the
/// versions of `store`; stops gracefully when `signal` resolves or
/// `RunningServer::shutdown` is called.
pub async fn start_index_server(
    store: IndexStore,
    config: ServerConfig,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, ServeError> {
    start_server(store, config, None, signal).await
}

/// Starts the generator service: `generator` decodes against the versions
/// of `store` (read in-process, swapped as they are published). Otherwise
/// as [`start_index_server`].
pub async fn start_generator_server(
    store: IndexStore,
    config: ServerConfig,
    generator: Arc<Generator>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, ServeError> {
    start_server(store, config, Some(generator), signal).await
}

/// One process serves either the index service or, with a generator, the
/// generator service; both with health, reflection, limits and metrics.
async fn start_server(
    store: IndexStore,
    config: ServerConfig,
    generator: Option<Arc<Generator>>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, ServeError> {
    config.validate().map_err(ServeError::Config)?;
    let role = if generator.is_some() {
        GENERATOR_SERVICE_NAME
    } else {
        SERVICE_NAME
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let store = store.with_keep(config.keep_versions);
    let mut state = IndexState::new(store, config.clone(), metrics.clone());
    if let Some(g) = &generator {
        // Never swap to a version the model cannot decode: keep the last one that fits.
        let g = Arc::clone(g);
        state = state.with_acceptor(Box::new(move |index| g.sidecar().check_index(index)));
    }
    let state = Arc::new(state);
    // The model thread publishes its health; an index server's backend is always up.
    let (backend_tx, backend) = watch::channel(true);
    if let Some(g) = &generator {
        let tx = backend_tx.clone();
        g.health().subscribe(move |alive| {
            tx.send_replace(alive);
        });
    }

    let health = Health::new(role).await;
    load_first_version(&state).await;
    let router = router(&config, &state, health.service(), generator)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServeError::Io {
            what: format!("binding {}", config.addr),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        what: "local address".into(),
        source,
    })?;

    // One shutdown: the caller's signal or `RunningServer::shutdown`.
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (begin_tx, begin_rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = signal => {}
            _ = stop_rx => {}
        }
        let _ = begin_tx.send(true);
    });
    let metrics_addr = match config.metrics_addr {
        Some(a) => Some(
            metrics::serve(metrics.clone(), a, shutdown_begun(begin_rx.clone()))
                .await
                .map_err(|source| ServeError::Io {
                    what: format!("binding metrics {a}"),
                    source,
                })?,
        ),
        None => None,
    };
    let interval = Duration::from_millis(config.reload_interval_ms.max(10));
    // Health says the truth before the port is announced, not once the
    // watcher first runs: a client checking right after start-up must not
    // see NOT_SERVING from a server that has its index and model.
    let serving = state.current().is_some() && *backend.borrow();
    if serving {
        state.metrics.ready.store(true, Ordering::Relaxed);
        health.set(ServingStatus::Serving).await;
    }
    spawn_watcher(
        state.clone(),
        health.clone(),
        serving,
        backend,
        backend_tx,
        interval,
        begin_rx.clone(),
    );
    let drain = Duration::from_secs(config.drain_timeout_s);
    let join = tokio::spawn(serve(
        router,
        listener,
        state.clone(),
        health,
        begin_rx,
        drain,
    ));
    tracing::info!(%addr, service = role, "listening");
    Ok(RunningServer {
        addr,
        metrics_addr,
        state,
        stop: Some(stop_tx),
        join,
    })
}

/// The layers every request passes: load shedding, then stream-end tracking.
type Layers =
    Stack<stream_end::StreamEndLayer, Stack<limits::ShedLayer, tower::layer::util::Identity>>;

/// Resolves once shutdown has begun.
async fn shutdown_begun(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|&b| b).await;
}

/// gRPC health under the overall name ("") and the role's service name,
/// NOT_SERVING until the watcher says otherwise.
#[derive(Clone)]
struct Health {
    reporter: HealthReporter,
    names: [&'static str; 2],
}

impl Health {
    async fn new(role: &'static str) -> Self {
        let health = Health {
            reporter: HealthReporter::new(),
            names: ["", role],
        };
        health.set(ServingStatus::NotServing).await;
        health
    }

    fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }

    async fn set(&self, status: ServingStatus) {
        for name in self.names {
            self.reporter.set_service_status(name, status).await;
        }
    }
}

/// Loads and verifies the current version, if any; the server starts either way.
async fn load_first_version(state: &Arc<IndexState>) {
    match state.reload().await {
        Ok(Some(v)) => tracing::info!(version = v, "index loaded and verified"),
        Ok(None) => tracing::warn!(
            root = %state.store.root().display(),
            "no index version published yet: NOT_SERVING until one is (Rebuild or `sidx index build`)"
        ),
        Err(e) => {
            tracing::error!(error = %e, "the current index version cannot be served: NOT_SERVING")
        }
    }
}

/// The transport (HTTP/2 settings, TLS, shedding, stream-end tracking) and
/// the services: health, reflection, and the index or generator service.
fn router(
    config: &ServerConfig,
    state: &Arc<IndexState>,
    health_service: HealthServer<HealthService>,
    generator: Option<Arc<Generator>>,
) -> Result<Router<Layers>, ServeError> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let index_service = generator.is_none().then(|| {
        IndexServiceServer::new(IndexServiceImpl::new(state.clone()))
            .max_decoding_message_size(config.max_request_bytes)
            .max_encoding_message_size(config.max_response_bytes)
    });
    let generator_service = generator.map(|g| {
        GeneratorServiceServer::new(GeneratorServiceImpl::new(state.clone(), g))
            .max_decoding_message_size(config.max_request_bytes)
            .max_encoding_message_size(config.max_response_bytes)
    });

    let mut builder = Server::builder()
        .timeout(config.request_timeout())
        .http2_keepalive_interval(
            (config.keepalive_interval_s > 0)
                .then(|| Duration::from_secs(config.keepalive_interval_s)),
        )
        .http2_keepalive_timeout(Some(Duration::from_secs(config.keepalive_timeout_s.max(1))))
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(crate::proto::WINDOW))
        .initial_connection_window_size(Some(4 * crate::proto::WINDOW))
        .trace_fn(|req| tracing::info_span!("grpc", path = %req.uri().path()));
    if config.max_connection_age_s > 0 {
        builder = builder.max_connection_age(Duration::from_secs(config.max_connection_age_s));
    }
    if let Some(tls) = &config.tls {
        let identity = Identity::from_pem(
            read(&tls.cert, "TLS certificate")?,
            read(&tls.key, "TLS key")?,
        );
        let mut t = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &tls.client_ca {
            t = t.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
        }
        builder = builder.tls_config(t)?;
    }
    Ok(builder
        .layer(limits::ShedLayer::new(
            config.max_concurrent_requests,
            state.metrics.clone(),
        ))
        .layer(stream_end::StreamEndLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_optional_service(index_service)
        .add_optional_service(generator_service))
}

/// Follows publications by other processes, and keeps health and `/ready`
/// in step with the state and the model thread, until shutdown begins.
fn spawn_watcher(
    state: Arc<IndexState>,
    health: Health,
    // What health says now.
    mut serving: bool,
    mut backend: watch::Receiver<bool>,
    // Held so that `backend` never reports a closed channel.
    _backend_tx: watch::Sender<bool>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let _backend_tx = _backend_tx;
        let mut versions = state.subscribe();
        loop {
            let healthy = state.current().is_some() && *backend.borrow_and_update();
            if healthy != serving && !*stop.borrow() {
                state.metrics.ready.store(healthy, Ordering::Relaxed);
                let status = if healthy {
                    ServingStatus::Serving
                } else {
                    tracing::error!(
                        "not serving: no usable index version, or the model thread stopped"
                    );
                    ServingStatus::NotServing
                };
                health.set(status).await;
                serving = healthy;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {
                    state.check_served();
                    if let Err(e) = state.reload().await {
                        tracing::warn!(error = %e, "a newly published version was refused; still serving the old one");
                    }
                }
                _ = versions.changed() => {}
                _ = backend.changed() => {}
                _ = stop.changed() => break,
            }
        }
    });
}

/// Serves until shutdown begins, then tells load balancers (health,
/// `/ready`), stops accepting and drains — for at most `drain`.
async fn serve(
    router: Router<Layers>,
    listener: tokio::net::TcpListener,
    state: Arc<IndexState>,
    health: Health,
    stop: watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), ServeError> {
    let on_signal = {
        let stop = stop.clone();
        async move {
            shutdown_begun(stop).await;
            state.begin_drain();
            state.metrics.ready.store(false, Ordering::Relaxed);
            health.set(ServingStatus::NotServing).await;
            tracing::info!("draining in-flight requests");
        }
    };
    // Our own listener (to learn the port before serving): its sockets need
    // TCP_NODELAY set here, or small responses wait for delayed ACKs (~40 ms).
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let serve = router.serve_with_incoming_shutdown(incoming, on_signal);
    tokio::pin!(serve);
    let deadline = async {
        shutdown_begun(stop).await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        r = &mut serve => r.map_err(ServeError::from),
        _ = deadline => {
            tracing::warn!(seconds = drain.as_secs(), "drain deadline passed; closing remaining connections");
            Ok(())
        }
    }
}
