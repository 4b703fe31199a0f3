//! `sidx bench grpc`: a bounded load generator against `sidx serve index`
//! (started as a child process on a synthetic index). Scenarios: batched
//! throughput, a fixed single-prefix rate, 10× overload, and catalog updates
//! swapped in under load. Latency is measured from each call's scheduled
//! start (open-loop scenarios), so queueing in the generator is not hidden.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, Semaphore};
use tonic::transport::Channel;

use super::fixtures::{key_tokens, long_tailed_sids};
use sidx::client::Connect;
use sidx::index::IndexStore;
use sidx::progress::Progress;
use sidx::proto::v1::index_service_client::IndexServiceClient;
use sidx::proto::v1::*;
use sidx::server::metrics::code_name;

const TOKEN: &str = "bench-admin-token-0123456789";

#[derive(Args)]
pub struct GrpcBench {
    /// SIDs in the synthetic 3 × 4096 index served.
    #[arg(long, default_value_t = 1_000_000)]
    sids: usize,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Prefixes per NextTokens call in the throughput scenario.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Client connections (each with its own HTTP/2 channel).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls per second of the single-prefix scenario.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Overload factor over the measured single-prefix capacity.
    #[arg(long, default_value_t = 10)]
    overload: u64,
    /// Catalog updates applied during the hot-swap scenario.
    #[arg(long, default_value_t = 100)]
    swaps: usize,
    /// Tokens in each queried prefix (0 = the root, whose answer is all 4 096 layer-1 tokens).
    #[arg(long, default_value_t = 2)]
    prefix_depth: usize,
    /// Server's process-wide concurrency limit.
    #[arg(long, default_value_t = 64)]
    server_max_concurrent: usize,
    /// Where the index is built (default: a temporary directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
}

/// Outcome of one scenario.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    shed_latencies_us: Vec<u32>,
    codes: BTreeMap<&'static str, u64>,
    prefixes: u64,
    /// Open loop: how late the generator sent each call (timer and CPU lag).
    lag_us: Vec<u32>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.shed_latencies_us.extend(other.shed_latencies_us);
        for (k, v) in other.codes {
            *self.codes.entry(k).or_default() += v;
        }
        self.prefixes += other.prefixes;
        self.lag_us.extend(other.lag_us);
    }

    fn record(&mut self, r: &Result<usize, tonic::Status>, started: Instant) {
        let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        match r {
            Ok(n) => {
                *self.codes.entry("OK").or_default() += 1;
                self.latencies_us.push(us);
                self.prefixes += *n as u64;
            }
            Err(s) => {
                *self.codes.entry(code_name(s.code())).or_default() += 1;
                if s.code() == tonic::Code::ResourceExhausted {
                    self.shed_latencies_us.push(us);
                }
            }
        }
    }
}

/// The `p` quantile of `v` (µs) in ms, or "—" when nothing was measured.
fn percentile(v: &mut [u32], p: f64) -> String {
    if v.is_empty() {
        return "—".into();
    }
    v.sort_unstable();
    format!(
        "{:.3}",
        v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    )
}

/// Random prefixes of indexed SIDs, as token ids.
struct Prefixes(Vec<Vec<u32>>);

impl Prefixes {
    fn new(keys: &[u64], n: usize, depth: usize) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut t = Vec::new();
        Self(
            (0..n)
                .map(|_| {
                    key_tokens(keys[rng.random_range(0..keys.len())], &mut t);
                    t[..depth.min(t.len())].iter().map(|&x| x as u32).collect()
                })
                .collect(),
        )
    }

    fn batch(&self, start: usize, n: usize) -> Vec<TokenIds> {
        (0..n)
            .map(|i| TokenIds {
                ids: self.0[(start + i) % self.0.len()].clone(),
            })
            .collect()
    }
}

/// One NextTokens call; `packed` asks for the packed answer form.
async fn call(
    c: &mut IndexServiceClient<Channel>,
    prefixes: Vec<TokenIds>,
    packed: bool,
) -> Result<usize, tonic::Status> {
    let n = prefixes.len();
    c.next_tokens(NextTokensRequest {
        prefix_ids: prefixes,
        packed,
        ..Default::default()
    })
    .await
    .map(|_| n)
}

fn server_rss_mb(pid: u32) -> f64 {
    super::util::proc_status_kib(&pid.to_string(), "VmRSS").map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Closed loop: `tasks` callers back to back for `d`.
async fn closed_loop(
    clients: &[IndexServiceClient<Channel>],
    prefixes: &Arc<Prefixes>,
    tasks: usize,
    batch: usize,
    d: Duration,
    stop: Option<Arc<AtomicBool>>,
    packed: bool,
) -> Tally {
    let deadline = Instant::now() + d;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let mut c = clients[t % clients.len()].clone();
            let (p, stop) = (prefixes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut i = t * 7919;
                while Instant::now() < deadline
                    && !stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
                {
                    let t0 = Instant::now();
                    let r = call(&mut c, p.batch(i, batch), packed).await;
                    tally.record(&r, t0);
                    i += batch;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        total.add(h.await.unwrap_or_default());
    }
    total
}

/// Open loop: `rate` single-prefix calls per second for `d`, at most `in_flight` at once.
async fn open_loop(
    clients: &[IndexServiceClient<Channel>],
    prefixes: &Arc<Prefixes>,
    rate: u64,
    in_flight: usize,
    d: Duration,
) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let permits = Arc::new(Semaphore::new(in_flight));
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = Instant::now();
    let total = (rate as f64 * d.as_secs_f64()) as u64;
    let mut dropped = 0u64;
    for k in 0..total {
        let scheduled = start + period.mul_f64(k as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        let mut c = clients[(k as usize) % clients.len()].clone();
        let (p, tally) = (prefixes.clone(), tally.clone());
        let lag_us = scheduled.elapsed().as_micros().min(u32::MAX as u128) as u32;
        tokio::spawn(async move {
            let sent = Instant::now();
            let r = call(&mut c, p.batch(k as usize, 1), false).await;
            let mut t = tally.lock().await;
            t.record(&r, sent);
            t.lag_us.push(lag_us);
            drop(permit);
        });
    }
    let _ = permits.acquire_many(in_flight as u32).await;
    let mut t = std::mem::take(&mut *tally.lock().await);
    if dropped > 0 {
        t.codes.insert("GENERATOR_BOUND", dropped);
    }
    t
}

pub async fn run(b: &GrpcBench, progress: &Progress) -> Result<()> {
    let work = b.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sidx-bench-grpc-{}", std::process::id()))
    });
    let root = work.join("index");
    let _ = std::fs::remove_dir_all(&root);
    progress.note(&format!("building a {}-SID index", b.sids));
    let keys = long_tailed_sids(b.sids, 4096, None, 7);
    super::fixtures::build_index(&IndexStore::new(&root), &keys, 4096, "bench grpc", 1, "")?;

    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--log", "warn", "serve", "index", "--index"])
        .arg(&root)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--max-concurrent-requests",
            &b.server_max_concurrent.to_string(),
        ])
        .env("SIDX_ADMIN_TOKEN", TOKEN)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the server")?;
    let pid = child.id().context("server pid")?;
    let mut lines = BufReader::new(child.stderr.take().context("server stderr")?).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await?
            .context("the server exited before listening")?;
        if let Some(rest) = line.strip_prefix("sidx index service on ") {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut clients = Vec::new();
    for _ in 0..b.connections.max(1) {
        let channel = Connect::new(&addr.to_string()).channel().await?;
        clients.push(sidx::client::index_client(channel));
    }
    let prefixes = Arc::new(Prefixes::new(&keys, 100_000, b.prefix_depth));
    drop(keys);
    let d = Duration::from_secs(b.duration_s);
    let mut rows: Vec<(String, Tally, f64, f64)> = Vec::new();

    progress.note("scenario 1: batched throughput");
    let rss0 = server_rss_mb(pid);
    for packed in [false, true] {
        let t0 = Instant::now();
        let t = closed_loop(
            &clients,
            &prefixes,
            b.connections * 2,
            b.batch,
            d,
            None,
            packed,
        )
        .await;
        rows.push((
            format!(
                "NextTokens, batches of {}, {} callers{}",
                b.batch,
                b.connections * 2,
                if packed { ", packed answers" } else { "" }
            ),
            t,
            t0.elapsed().as_secs_f64(),
            server_rss_mb(pid),
        ));
    }

    progress.note("scenario 2: single-prefix calls at a fixed rate");
    let t0 = Instant::now();
    let t = open_loop(&clients, &prefixes, b.rate, 4096, d).await;
    rows.push((
        format!("NextTokens, 1 prefix, {} rps open loop", b.rate),
        t,
        t0.elapsed().as_secs_f64(),
        server_rss_mb(pid),
    ));

    progress.note("scenario 3: overload");
    let callers = b.overload as usize * b.server_max_concurrent;
    let t0 = Instant::now();
    let t = closed_loop(&clients, &prefixes, callers, 1, d, None, false).await;
    rows.push((
        format!(
            "overload: {callers} callers = {}× the server's limit of {}",
            b.overload, b.server_max_concurrent
        ),
        t,
        t0.elapsed().as_secs_f64(),
        server_rss_mb(pid),
    ));

    progress.note("scenario 4: catalog updates under load");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (clients, prefixes, stop) = (clients.clone(), prefixes.clone(), stop.clone());
        let (tasks, batch) = (b.connections, b.batch.min(64));
        tokio::spawn(async move {
            closed_loop(
                &clients,
                &prefixes,
                tasks,
                batch,
                Duration::from_secs(3600),
                Some(stop),
                false,
            )
            .await
        })
    };
    let rss_before_swaps = server_rss_mb(pid);
    let mut rss_by_swaps = Vec::new();
    let t0 = Instant::now();
    let mut admin = clients[0].clone();
    let mut failed_updates = 0;
    for k in 0..b.swaps {
        let change = CatalogChange {
            change: Some(catalog_change::Change::UpsertSid(ItemSid {
                item_id: format!("swap-{k}"),
                sid: Some(Sid {
                    tokens: vec![
                        Token {
                            layer: 1,
                            code: (k % 4096) as u32,
                        },
                        Token { layer: 2, code: 7 },
                        Token { layer: 3, code: 11 },
                        Token {
                            layer: 4,
                            code: 5000 + k as u32,
                        },
                    ],
                }),
            })),
        };
        let mut req = tonic::Request::new(tokio_stream::iter(vec![change]));
        req.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse()?);
        if admin.apply_catalog_update(req).await.is_err() {
            failed_updates += 1;
        }
        if (k + 1) % (b.swaps / 4).max(1) == 0 {
            rss_by_swaps.push((k + 1, server_rss_mb(pid)));
        }
    }
    let swap_seconds = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let t = load.await?;
    let rss_after_swaps = server_rss_mb(pid);
    rows.push((
        format!(
            "queries during {} updates ({failed_updates} failed)",
            b.swaps
        ),
        t,
        swap_seconds,
        rss_after_swaps,
    ));

    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&work);

    println!(
        "sidx bench grpc: {} SIDs, prefixes of {} tokens, server limit {} concurrent, {} connections, {} s per scenario; latency from when a call is sent",
        b.sids, b.prefix_depth, b.server_max_concurrent, b.connections, b.duration_s
    );
    println!(
        "| scenario | calls | OK | shed (RESOURCE_EXHAUSTED) | other | calls/s | prefixes/s | p50 ms | p99 ms | shed p50 ms | shed p99 ms | sender lag p99 ms | server RSS MB |"
    );
    println!("|{}|", ["---"; 13].join("|"));
    for (name, mut t, secs, rss) in rows {
        let calls: u64 = t.codes.values().sum();
        let ok = t.codes.get("OK").copied().unwrap_or(0);
        let shed = t.codes.get("RESOURCE_EXHAUSTED").copied().unwrap_or(0);
        let other: Vec<String> = t
            .codes
            .iter()
            .filter(|(k, _)| **k != "OK" && **k != "RESOURCE_EXHAUSTED")
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "| {name} | {calls} | {ok} | {shed} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {rss:.0} |",
            if other.is_empty() {
                "0".into()
            } else {
                other.join(", ")
            },
            calls as f64 / secs,
            t.prefixes as f64 / secs,
            percentile(&mut t.latencies_us, 0.5),
            percentile(&mut t.latencies_us, 0.99),
            percentile(&mut t.shed_latencies_us, 0.5),
            percentile(&mut t.shed_latencies_us, 0.99),
            percentile(&mut t.lag_us, 0.99),
        );
    }
    let checkpoints: Vec<String> = rss_by_swaps
        .iter()
        .map(|(k, r)| format!("{r:.0} MB after {k}"))
        .collect();
    println!(
        "server RSS: {rss0:.0} MB at start, {rss_before_swaps:.0} MB before the updates, {}; {rss_after_swaps:.0} MB at the end",
        checkpoints.join(", ")
    );
    if failed_updates > 0 {
        bail!("{failed_updates} catalog updates failed");
    }
    Ok(())
}
