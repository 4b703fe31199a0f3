//! `sidx bench hf`: sidx against Hugging Face on the same models — the
//! parity fixtures of `tests/fixtures/hf` (HF weights in `hf/`, optimum
//! exports beside them) — one batch of users, constrained beam search, the
//! same number of CPU threads, cached and uncached, in the same run. HF runs
//! in `benches/hf_generate.py` (torch, transformers: python/requirements-hf.txt).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

use sidx::generate::{BeamConfig, RuntimeOptions, beam_search, open_model};
use sidx::index::{IndexStore, build_from_table};
use sidx::progress::Progress;
use sidx::sid::SidTable;

#[derive(Args)]
pub struct HfBench {
    /// The parity fixtures (python/hf_fixtures.py).
    #[arg(long, default_value = "tests/fixtures/hf")]
    fixtures: PathBuf,
    /// Models to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "gpt2,llama,qwen2,t5")]
    names: Vec<String>,
    /// The SIDs the fixtures were trained on.
    #[arg(long, default_value = "tests/fixtures/generator/sids.tsv")]
    sids: PathBuf,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 20)]
    beam: usize,
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// CPU threads of both sides (ONNX Runtime intra-op, torch).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Batches timed per row (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Python with torch and transformers (python/requirements-hf.txt).
    #[arg(long, env = "SIDX_HF_PYTHON", default_value = ".venv-hf/bin/python")]
    python: PathBuf,
    #[arg(long, default_value = "benches/hf_generate.py")]
    peer_script: PathBuf,
    /// ONNX Runtime library [default: ORT_DYLIB_PATH, lib/ beside the executable, .ort/lib].
    #[arg(long, env = "SIDX_ORT_LIB")]
    ort_lib: Option<PathBuf>,
}

/// One line of the HF peer.
#[derive(Deserialize)]
struct PeerRow {
    name: String,
    cached: bool,
    ms: f64,
    prompts: Vec<Vec<i64>>,
}

/// The export sidx runs for `name` with or without a cache: the fixture
/// folder itself, T5's encoder and first-step decoder alone, or the
/// `-nocache` (optimum `text-generation`) or `-dynamo` export of the same weights.
fn export(b: &HfBench, name: &str, cached: bool, scratch: &Path) -> Result<Option<PathBuf>> {
    let dir = b.fixtures.join(name);
    if cached {
        return Ok(Some(dir));
    }
    if dir.join("encoder_model.onnx").is_file() {
        let sub = scratch.join(format!("{name}-nocache"));
        std::fs::create_dir_all(&sub)?;
        for f in [
            "encoder_model.onnx",
            "decoder_model.onnx",
            "generator.json",
            "config.json",
        ] {
            std::fs::copy(dir.join(f), sub.join(f)).with_context(|| format!("copying {f}"))?;
        }
        return Ok(Some(sub));
    }
    Ok(["nocache", "dynamo"]
        .iter()
        .map(|v| b.fixtures.join(format!("{name}-{v}")))
        .find(|d| d.is_dir()))
}

pub fn run(b: &HfBench, progress: &Progress) -> Result<()> {
    let args = vec![
        "--fixtures".into(),
        b.fixtures.display().to_string(),
        "--names".into(),
        b.names.join(","),
        "--sids".into(),
        b.sids.display().to_string(),
        "--batch".into(),
        b.batch.to_string(),
        "--beam".into(),
        b.beam.to_string(),
        "--top-k".into(),
        b.top_k.to_string(),
        "--threads".into(),
        b.threads.to_string(),
        "--repeats".into(),
        b.repeats.to_string(),
    ];
    progress.note("running Hugging Face generate (benches/hf_generate.py)");
    let peers: Vec<PeerRow> = super::util::python_peer(&b.python, &b.peer_script, &args)?;
    let scratch = super::util::scratch_dir()?;
    let store = IndexStore::new(&scratch.join("index"));
    build_from_table(&store, &SidTable::read(&b.sids)?, "bench hf", None)?;
    let index = store.open_current()?;
    let opts = RuntimeOptions {
        library: b.ort_lib.clone(),
        threads: b.threads,
        ..RuntimeOptions::default()
    };
    let cfg = BeamConfig {
        beam: b.beam,
        top_k: b.top_k,
        constrained: true,
        max_len: index.max_sid_len(),
    };
    println!(
        "batch {} × beam {}, top {}, {} thread(s), constrained; median of {} batches",
        b.batch, b.beam, b.top_k, b.threads, b.repeats
    );
    println!(
        "{:<8} {:<8} | {:>10} {:>10} | {:>8} | {:>11}",
        "model", "cache", "sidx ms", "HF ms", "HF/sidx", "constraint"
    );
    for peer in &peers {
        let cache = if peer.cached { "cached" } else { "no cache" };
        let Some(dir) = export(b, &peer.name, peer.cached, &scratch)? else {
            println!(
                "{:<8} {:<8} | {:>10} {:>10.2} | {:>8} | {:>11}",
                peer.name, cache, "—", peer.ms, "—", "—"
            );
            continue;
        };
        let mut model = open_model(&dir, None, &opts)?;
        let configs = vec![cfg; peer.prompts.len()];
        let mut times = Vec::with_capacity(b.repeats);
        let mut search_share = 0.0;
        for round in 0..=b.repeats {
            let t0 = Instant::now();
            let s = beam_search(&index, &mut *model.batch(peer.prompts.clone()), &configs)
                .map_err(anyhow::Error::msg)?;
            let total = t0.elapsed().as_secs_f64();
            if round > 0 {
                times.push(total * 1e3);
                search_share += s.search_time.as_secs_f64() / total / b.repeats as f64;
            }
        }
        if times.is_empty() {
            bail!("--repeats must be at least 1");
        }
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        println!(
            "{:<8} {:<8} | {:>10.2} {:>10.2} | {:>7.1}× | {:>10.2}%",
            peer.name,
            cache,
            ms,
            peer.ms,
            peer.ms / ms,
            search_share * 100.0
        );
    }
    Ok(())
}
