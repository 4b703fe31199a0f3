//! `sidx serve …`: the gRPC services.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use std::sync::Arc;

use sidx::index::IndexStore;
use sidx::server::{
    ServerConfig, TlsConfig, start_generator_server, start_index_server, termination,
};

use super::generate::ModelArgs;
use sidx::client::mirror::Mirror;

#[derive(Subcommand)]
pub enum ServeCommand {
    /// Serve an index root over gRPC (sidx.v1.IndexService, health, reflection).
    Index(ServeIndexArgs),
    /// Serve an ONNX generator over gRPC (sidx.v1.GeneratorService, health,
    /// reflection), decoding against the index root's current version.
    Generator(ServeGeneratorArgs),
}

#[derive(Args)]
pub struct ServeIndexArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// When the root has no published version yet, build the first one from
    /// this SID file before serving (e.g. from a ConfigMap); a root that has
    /// one keeps it.
    #[arg(long, env = "SIDX_SEED_SIDS")]
    seed_sids: Option<PathBuf>,
    /// Codebooks stored with the seed version, so updates can encode embeddings.
    #[arg(long, requires = "seed_sids")]
    seed_codebooks: Option<PathBuf>,
}

impl ServeIndexArgs {
    /// Builds the seed version into an empty root.
    fn seed(&self, store: &IndexStore) -> Result<()> {
        let Some(sids) = &self.seed_sids else {
            return Ok(());
        };
        if store.current()?.is_some() {
            tracing::info!(root = %self.server.index.display(), "index root has a version; --seed-sids not used");
            return Ok(());
        }
        std::fs::create_dir_all(&self.server.index)
            .with_context(|| format!("creating {}", self.server.index.display()))?;
        let table = sidx::sid::SidTable::read(sids)?;
        let built = sidx::index::build_from_table(
            store,
            &table,
            &sids.display().to_string(),
            self.seed_codebooks.as_deref(),
        )
        .with_context(|| {
            format!(
                "seeding {} from {}",
                self.server.index.display(),
                sids.display()
            )
        })?;
        tracing::info!(version = built.version, sids = %sids.display(), "seeded the empty index root");
        Ok(())
    }
}

#[derive(Args)]
pub struct ServeGeneratorArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Mirror the index from this index service (e.g. http://sidx-index:50051)
    /// into --index, following its version swaps; start once the first copy is here.
    #[arg(long, env = "SIDX_MIRROR_FROM")]
    mirror_from: Option<String>,
    /// Replication (or admin) token of the index service mirrored from.
    #[arg(
        long,
        env = "SIDX_MIRROR_TOKEN",
        hide_env_values = true,
        requires = "mirror_from"
    )]
    mirror_token: Option<String>,
}

#[derive(Args)]
pub struct ServerArgs {
    /// Index root directory (CURRENT + versions/); may be empty until a Rebuild.
    #[arg(long, env = "SIDX_INDEX")]
    index: PathBuf,
    /// gRPC listen address [config: addr; default 127.0.0.1:50051].
    #[arg(long, env = "SIDX_ADDR")]
    addr: Option<SocketAddr>,
    /// TOML file with any ServerConfig keys; flags override it.
    #[arg(long, env = "SIDX_CONFIG")]
    config: Option<PathBuf>,
    /// Prometheus /metrics listen address [config: metrics_addr].
    #[arg(long, env = "SIDX_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Bearer token required by admin RPCs (≥ 16 chars) [config: admin_token].
    #[arg(long, env = "SIDX_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Bearer token required by FetchVersion/WatchVersions (≥ 16 chars; the
    /// admin token also works) [config: replication_token; none = open].
    #[arg(long, env = "SIDX_REPLICATION_TOKEN", hide_env_values = true)]
    replication_token: Option<String>,
    /// Requests served at once before shedding [config: max_concurrent_requests; 256].
    #[arg(long)]
    max_concurrent_requests: Option<usize>,
    /// Server-side deadline per request in ms [config: request_timeout_ms; 5000].
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Seconds in-flight requests get after SIGTERM [config: drain_timeout_s; 20].
    #[arg(long)]
    drain_timeout_s: Option<u64>,
    /// PEM certificate chain: serve TLS [config: tls.cert].
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [config: tls.key].
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA: require client certificates it signed (mTLS) [config: tls.client_ca].
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

impl ServerArgs {
    fn config(&self) -> Result<ServerConfig> {
        let mut c = match &self.config {
            Some(p) => ServerConfig::from_file(p).map_err(anyhow::Error::msg)?,
            None => ServerConfig::default(),
        };
        if let Some(a) = self.addr {
            c.addr = a;
        }
        if self.metrics_addr.is_some() {
            c.metrics_addr = self.metrics_addr;
        }
        if self.admin_token.is_some() {
            c.admin_token = self.admin_token.clone();
        }
        if self.replication_token.is_some() {
            c.replication_token = self.replication_token.clone();
        }
        if let Some(v) = self.max_concurrent_requests {
            c.max_concurrent_requests = v;
        }
        if let Some(v) = self.request_timeout_ms {
            c.request_timeout_ms = v;
        }
        if let Some(v) = self.drain_timeout_s {
            c.drain_timeout_s = v;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            c.tls = Some(TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            });
        }
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

fn async_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sidx-grpc")
        .build()
        .context("starting the async runtime")
}

pub fn run(cmd: ServeCommand) -> Result<()> {
    match cmd {
        ServeCommand::Index(a) => {
            let config = a.server.config()?;
            let store = IndexStore::new(&a.server.index);
            a.seed(&store)?;
            async_runtime()?.block_on(async {
                let server = start_index_server(store, config, termination()).await?;
                eprintln!(
                    "sidx index service on {} (metrics: {:?})",
                    server.addr, server.metrics_addr
                );
                server.wait().await?;
                anyhow::Ok(())
            })
        }
        ServeCommand::Generator(a) => {
            let config = a.server.config()?;
            let store = IndexStore::new(&a.server.index);
            async_runtime()?.block_on(async {
                let mirror = match &a.mirror_from {
                    Some(source) => {
                        sidx::client::mirror::prepare_root(&a.server.index)?;
                        let mirror = Mirror::new(source.clone(), store.clone())
                            .with_token(a.mirror_token.clone());
                        // A stop before the first copy is a clean exit.
                        let Some(version) = mirror.sync_with_retry(termination()).await else {
                            return Ok(());
                        };
                        tracing::info!(version, "index mirrored");
                        Some(tokio::spawn(mirror.run(std::future::pending())))
                    }
                    None => None,
                };
                // The model and the index must fit before the port opens.
                let index = store.open_current().with_context(|| {
                    format!(
                        "the generator needs a published index version in {}",
                        a.server.index.display()
                    )
                })?;
                let generator = Arc::new(a.model.start(&index)?);
                let server =
                    start_generator_server(store, config, Arc::clone(&generator), termination())
                        .await?;
                eprintln!(
                    "sidx generator service on {} ({} execution provider; metrics: {:?})",
                    server.addr,
                    generator.device(),
                    server.metrics_addr
                );
                server.wait().await?;
                if let Some(m) = mirror {
                    m.abort();
                }
                anyhow::Ok(())
            })
        }
    }
}
