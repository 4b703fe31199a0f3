//! The serving half of `sidx demo`: an index built from the committed
//! generator's SIDs, the index service and the generator service (mirroring
//! the index from it) on loopback, and `Generate` requests from users'
//! histories through the gRPC client — constrained and unconstrained.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use sidx::client::Connect;
use sidx::client::mirror::Mirror;
use sidx::eval::{Case, leave_one_out};
use sidx::generate::{Generator, GeneratorLimits, OnnxModel, RuntimeOptions};
use sidx::index::{IndexStore, build_from_table};
use sidx::proto::v1::GenerateRequest;
use sidx::server::{ServerConfig, start_generator_server, start_index_server};
use sidx::sid::SidTable;

/// What the requests showed.
#[derive(Debug, Default, Serialize)]
pub struct ServeSummary {
    pub index_addr: String,
    pub generator_addr: String,
    pub index_version: u64,
    pub users: usize,
    /// Histories from real users (held-out last item) or random catalog items.
    pub real_histories: bool,
    pub constrained_sids: usize,
    pub constrained_invalid: usize,
    pub unconstrained_sids: usize,
    pub unconstrained_invalid: usize,
    /// Real histories only: share of users whose held-out item is in the top 10.
    pub recall_at_10: Option<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub example: Vec<String>,
}

fn loopback() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().expect("an address"),
        drain_timeout_s: 1,
        reload_interval_ms: 200,
        ..ServerConfig::default()
    }
}

/// Histories of real users (held-out target) whose items the index has, or
/// random ones.
fn cases(table: &SidTable, sequences: Option<&Path>, users: usize) -> (Vec<Case>, bool) {
    if let Some(path) = sequences.filter(|p| p.is_file())
        && let Ok(all) = leave_one_out(path)
    {
        let known: std::collections::HashSet<&str> = table.iter().map(|(id, _)| id).collect();
        let real: Vec<Case> = all
            .into_iter()
            .filter(|c| {
                known.contains(c.target.as_str())
                    && c.history.iter().all(|h| known.contains(h.as_str()))
            })
            .take(users)
            .collect();
        if !real.is_empty() {
            return (real, true);
        }
    }
    let ids: Vec<&str> = table.iter().map(|(id, _)| id).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let random = (0..users)
        .map(|_| {
            let n = rng.random_range(2..8);
            Case {
                history: (0..n)
                    .map(|_| ids.choose(&mut rng).expect("items").to_string())
                    .collect(),
                target: String::new(),
            }
        })
        .collect();
    (random, false)
}

pub async fn serve_and_generate(
    out: &Path,
    model_dir: &Path,
    sequences: Option<&Path>,
    users: usize,
) -> Result<ServeSummary> {
    let sids = model_dir.join("sids.tsv");
    let table = SidTable::read(&sids)
        .with_context(|| format!("the demo generator's SIDs in {}", model_dir.display()))?;
    let serve = out.join("serve");
    let _ = std::fs::remove_dir_all(&serve);
    let store = IndexStore::new(&serve.join("index"));
    build_from_table(&store, &table, &sids.display().to_string(), None)?;
    let index_server = start_index_server(store, loopback(), std::future::pending()).await?;
    let index_url = format!("http://{}", index_server.addr);

    // The generator's own copy of the index, mirrored from the index service.
    let local = IndexStore::new(&serve.join("generator-index"));
    sidx::client::mirror::prepare_root(local.root())?;
    Mirror::new(index_url, local.clone()).sync_once().await?;
    let model = OnnxModel::open(
        &model_dir.join("model_kv.onnx"),
        None,
        &RuntimeOptions::default(),
    )?;
    let generator = Generator::start(model, &local.open_current()?, GeneratorLimits::default())?;
    let gen_server = start_generator_server(
        local,
        loopback(),
        Arc::new(generator),
        std::future::pending(),
    )
    .await?;
    let client =
        sidx::client::generator_client(Connect::new(&gen_server.addr.to_string()).channel().await?);

    let (cases, real) = cases(&table, sequences, users);
    let mut summary = ServeSummary {
        index_addr: index_server.addr.to_string(),
        generator_addr: gen_server.addr.to_string(),
        users: cases.len(),
        real_histories: real,
        ..Default::default()
    };
    let mut latencies = Vec::new();
    let mut hits = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, case) in cases.iter().enumerate() {
        for constrained in [true, false] {
            let mut c = client.clone();
            let req = GenerateRequest {
                history_item_ids: case.history.clone(),
                beam_width: Some(20),
                top_k: Some(10),
                constrained: Some(constrained),
                ..Default::default()
            };
            tasks.spawn(async move {
                let t0 = Instant::now();
                let r = c.generate(req).await.map(|r| r.into_inner());
                (i, constrained, t0.elapsed(), r)
            });
            if tasks.len() >= 8 {
                collect(
                    tasks.join_next().await,
                    &cases,
                    &mut summary,
                    &mut latencies,
                    &mut hits,
                )?;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect(Some(done), &cases, &mut summary, &mut latencies, &mut hits)?;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1e3)
    };
    summary.p50_ms = pct(0.5);
    summary.p99_ms = pct(0.99);
    if real && !cases.is_empty() {
        summary.recall_at_10 = Some(hits as f64 / cases.len() as f64);
    }
    let json = serde_json::to_string_pretty(&summary)?;
    sidx::fsx::write_atomic(&serve.join("generate.json"), |w| {
        w.write_all(json.as_bytes())
    })?;
    gen_server.shutdown().await?;
    index_server.shutdown().await?;
    Ok(summary)
}

type Answer = (
    usize,
    bool,
    Duration,
    Result<sidx::proto::v1::GenerateResponse, tonic::Status>,
);

fn collect(
    done: Option<Result<Answer, tokio::task::JoinError>>,
    cases: &[Case],
    s: &mut ServeSummary,
    latencies: &mut Vec<Duration>,
    hits: &mut usize,
) -> Result<()> {
    let Some(done) = done else { return Ok(()) };
    let (i, constrained, elapsed, r) = done?;
    let r = r.context("Generate")?;
    latencies.push(elapsed);
    s.index_version = r.index_version;
    let mut sids: Vec<(&Option<sidx::proto::v1::Sid>, bool)> = Vec::new();
    for it in &r.items {
        if sids.last().is_none_or(|(sid, _)| *sid != &it.sid) {
            sids.push((&it.sid, it.item_id.is_empty()));
        }
    }
    let invalid = sids.iter().filter(|(_, bad)| *bad).count();
    if constrained {
        s.constrained_sids += sids.len();
        s.constrained_invalid += invalid;
        if r.items.iter().any(|it| it.item_id == cases[i].target) {
            *hits += 1;
        }
        if s.example.is_empty() {
            s.example = std::iter::once(format!("history {}", cases[i].history.join(",")))
                .chain(r.items.iter().take(5).map(|it| {
                    let sid: Vec<String> = it
                        .sid
                        .iter()
                        .flat_map(|s| &s.tokens)
                        .map(|t| format!("{}:{}", t.layer, t.code))
                        .collect();
                    format!(
                        "item {} (SID {}, log-prob {:.3})",
                        it.item_id,
                        sid.join(" "),
                        it.score
                    )
                }))
                .collect();
        }
    } else {
        s.unconstrained_sids += sids.len();
        s.unconstrained_invalid += invalid;
    }
    Ok(())
}

/// The committed generator: `tests/fixtures/generator` in the checkout (the
/// working directory, or above the executable in target/release).
pub fn default_model_dir() -> PathBuf {
    let rel = Path::new("tests/fixtures/generator");
    if rel.is_dir() {
        return rel.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.ancestors().nth(3).map(|root| root.join(rel)))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| rel.to_path_buf())
}
