//! `sidx bench …`: measurements that print a table, peers in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;

use sidx::progress::Progress;
use sidx::quantize::{ResidualQuantizer, TrainConfig};
use sidx::synth::{self, SynthConfig};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// RQ training and greedy encoding, sidx against faiss-cpu's ResidualQuantizer.
    Quantize(QuantizeBench),
    /// Index build, size, open and lookup speed against trie peers.
    Index(super::bench_index::IndexBench),
    /// Load against `sidx serve index`: throughput, latency, overload, swaps under load.
    Grpc(super::bench_grpc::GrpcBench),
    /// Constrained beam search: the constraint's cost per step, and end to end with an ONNX generator.
    Generate(super::bench_generate::GenerateBench),
}

#[derive(Args)]
pub struct QuantizeBench {
    /// Items to encode (synthetic, long-tailed).
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Quantizer layers L.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Codebook size M (a power of two, for faiss).
    #[arg(long, default_value_t = 256)]
    codebook_size: usize,
    /// Items the codebooks are trained on.
    #[arg(long, default_value_t = 100_000)]
    train_sample: usize,
    /// Lloyd iterations per layer (faiss's default is 25).
    #[arg(long, default_value_t = 25)]
    kmeans_iters: usize,
    /// Seed of data, sampling and k-means.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// k-means seedings to run for sidx (each a row).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kmeans++,random"
    )]
    kmeans_init: Vec<super::InitArg>,
    /// Python with numpy and faiss-cpu (see scripts/setup-python.sh).
    #[arg(long, env = "SIDX_PYTHON", default_value = ".venv/bin/python")]
    python: PathBuf,
    /// The faiss side of the benchmark.
    #[arg(long, default_value = "benches/faiss_rq.py")]
    faiss_script: PathBuf,
    /// Skip faiss (ours only).
    #[arg(long)]
    no_faiss: bool,
}

/// One row of the table.
#[derive(Debug, Deserialize)]
struct Row {
    name: String,
    train_seconds: f64,
    encode_seconds: f64,
    mse: f64,
    #[serde(default)]
    threads: Option<usize>,
}

pub fn run(cmd: BenchCommand, progress: &Progress) -> Result<()> {
    match cmd {
        BenchCommand::Quantize(b) => quantize(&b, progress),
        BenchCommand::Index(b) => super::bench_index::run(&b, progress),
        BenchCommand::Generate(b) => super::bench_generate::run(&b, progress),
        BenchCommand::Grpc(b) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(super::bench_grpc::run(&b, progress)),
    }
}

fn quantize(b: &QuantizeBench, progress: &Progress) -> Result<()> {
    let cfg = SynthConfig {
        items: b.items,
        dim: b.dim,
        clusters: 1024,
        seed: b.seed,
        ..SynthConfig::default()
    };
    progress.note(&format!(
        "generating {} × {} synthetic embeddings",
        b.items, b.dim
    ));
    let x = synth::generate(&cfg);
    let dir = tempfile_dir()?;
    let emb = dir.join("embeddings.npy");
    sidx::npy::write(&emb, &[b.items, b.dim], &x)?;

    let mut rows = Vec::new();
    for &init in &b.kmeans_init {
        let train = TrainConfig {
            layers: b.layers,
            codebook_size: b.codebook_size,
            train_sample: Some(b.train_sample),
            seed: b.seed,
            beam: 1,
            kmeans_iters: b.kmeans_iters,
            kmeans_init: init.into(),
        };
        let name = format!(
            "sidx ({})",
            init.to_possible_value().expect("named").get_name()
        );
        progress.note(&format!("{name}: training"));
        let t0 = Instant::now();
        let rq = ResidualQuantizer::train(&x, b.dim, &train, progress)?;
        let train_seconds = t0.elapsed().as_secs_f64();
        progress.note(&format!("{name}: encoding"));
        let t1 = Instant::now();
        let enc = rq.encode(&x, 1, progress);
        let encode_seconds = t1.elapsed().as_secs_f64();
        rows.push(Row {
            name,
            train_seconds,
            encode_seconds,
            mse: enc.mse(),
            threads: Some(rayon::current_num_threads()),
        });
    }
    drop(x);

    if !b.no_faiss {
        progress.note("faiss: training and encoding");
        let args: Vec<String> = [
            ("--embeddings", emb.to_string_lossy().into_owned()),
            ("--layers", b.layers.to_string()),
            ("--codebook-size", b.codebook_size.to_string()),
            ("--train-sample", b.train_sample.to_string()),
            ("--kmeans-iters", b.kmeans_iters.to_string()),
            ("--seed", b.seed.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect();
        let faiss: Vec<Row> = python_peer(&b.python, &b.faiss_script, &args)?;
        rows.push(
            faiss
                .into_iter()
                .last()
                .context("the faiss benchmark printed nothing")?,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "RQ {}×{} on {} × {}-d synthetic items, trained on {}, greedy encoding",
        b.layers, b.codebook_size, b.items, b.dim, b.train_sample
    );
    println!(
        "| {:<16} | {:>7} | {:>8} | {:>9} | {:>12} | {:>10} | {:>9} |",
        "implementation", "threads", "train s", "encode s", "encode items/s", "MSE", "MSE ratio"
    );
    println!("|{}|", ["---"; 7].join("|"));
    let base_mse = rows.last().map(|r| r.mse).unwrap_or(1.0);
    for r in &rows {
        println!(
            "| {:<16} | {:>7} | {:>8.2} | {:>9.2} | {:>14.0} | {:>10.5} | {:>9.4} |",
            r.name,
            r.threads.map_or("?".into(), |t| t.to_string()),
            r.train_seconds,
            r.encode_seconds,
            b.items as f64 / r.encode_seconds,
            r.mse,
            r.mse / base_mse
        );
    }
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sidx-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs a Python peer script and returns the JSON objects it printed, one per line.
pub fn python_peer<T: serde::de::DeserializeOwned>(
    python: &Path,
    script: &Path,
    args: &[String],
) -> Result<Vec<T>> {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("{} printed {l:?}", script.display()))
        })
        .collect()
}

/// A field of `/proc/<pid>/status` in KiB (`pid` may be `self`), e.g. `VmRSS`.
pub fn proc_status_kib(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
