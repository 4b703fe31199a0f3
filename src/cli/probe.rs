//! `sidx probe`: a client-side check of running services, for `helm test`
//! and operators — health, then one real query each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use sidx::client::Connect;
use sidx::proto::v1::{GenerateRequest, LookupRequest, NextTokensRequest, Sid};

#[derive(Args)]
pub struct ProbeArgs {
    /// Index service address (host:port): health, then a walk from the root to a complete SID and its items.
    #[arg(long)]
    index: Option<String>,
    /// Generator service address (host:port): health, then one Generate request.
    #[arg(long)]
    generator: Option<String>,
    /// History for the Generate request, comma-separated item ids [default: the item the index walk found].
    #[arg(long, value_delimiter = ',')]
    history: Vec<String>,
    /// Deadline of each call, seconds.
    #[arg(long, default_value_t = 10)]
    timeout_s: u64,
    /// CA certificate (PEM) to trust for `https://` addresses.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
}

async fn channel(addr: &str, timeout: Duration, tls_ca: Option<&Path>) -> Result<Channel> {
    let mut connect = Connect::new(addr).connect_timeout(timeout).timeout(timeout);
    if let Some(ca) = tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        connect = connect.tls_ca(pem);
    }
    connect
        .channel()
        .await
        .with_context(|| format!("connecting to {}", connect.url()))
}

async fn healthy(ch: Channel, service: &str) -> Result<()> {
    let status = HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .with_context(|| format!("health check of {service}"))?
        .into_inner()
        .status;
    if status != ServingStatus::Serving as i32 {
        bail!("{service} is not serving (health status {status})");
    }
    Ok(())
}

pub fn run(a: &ProbeArgs) -> Result<()> {
    if a.index.is_none() && a.generator.is_none() {
        bail!("give --index and/or --generator");
    }
    let timeout = Duration::from_secs(a.timeout_s);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut history = a.history.clone();
        if let Some(addr) = &a.index {
            let ch = channel(addr, timeout, a.tls_ca.as_deref()).await?;
            healthy(ch.clone(), "sidx.v1.IndexService").await?;
            let mut client = sidx::client::index_client(ch);
            // Follow the first allowed token from the root until a complete SID.
            let mut sid = Sid::default();
            let version = loop {
                let r = client
                    .next_tokens(NextTokensRequest {
                        prefixes: vec![sid.clone()],
                        ..Default::default()
                    })
                    .await
                    .context("NextTokens")?
                    .into_inner();
                let next = &r.results[0];
                if next.complete {
                    break r.version;
                }
                let Some(t) = next.allowed.first() else {
                    bail!("the index answered a prefix with no tokens and no SID");
                };
                sid.tokens.push(*t);
            };
            let items = client
                .lookup(LookupRequest {
                    sids: vec![sid],
                    ..Default::default()
                })
                .await
                .context("Lookup")?
                .into_inner()
                .by_sid
                .remove(0)
                .item_ids;
            let Some(item) = items.first() else {
                bail!("a complete SID without items");
            };
            println!("index {addr}: SERVING, version {version}, first SID holds item {item}");
            if history.is_empty() {
                history.push(item.clone());
            }
        }
        if let Some(addr) = &a.generator {
            if history.is_empty() {
                bail!("--generator needs --history (or --index to find an item)");
            }
            let ch = channel(addr, timeout, a.tls_ca.as_deref()).await?;
            healthy(ch.clone(), "sidx.v1.GeneratorService").await?;
            let r = sidx::client::generator_client(ch)
                .generate(GenerateRequest {
                    history_item_ids: history,
                    top_k: Some(5),
                    beam_width: Some(10),
                    ..Default::default()
                })
                .await
                .context("Generate")?
                .into_inner();
            if r.items.is_empty() || r.invalid_sids != 0 {
                bail!(
                    "Generate returned {} items, {} invalid",
                    r.items.len(),
                    r.invalid_sids
                );
            }
            println!(
                "generator {addr}: SERVING, version {}, top item {}",
                r.index_version, r.items[0].item_id
            );
        }
        Ok(())
    })
}
