//! `sidx bench quantize`: RQ training and encoding, sidx against faiss-cpu.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;

use sidx::progress::Progress;
use sidx::quantize::{
    DEFAULT_KMEANS_TOL, Init, JOINT_BEAM, Method, ResidualQuantizer, TrainConfig,
};
use sidx::synth::{self, SynthConfig};

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
    /// k-means seedings to run for sidx rq-kmeans (each a row).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kmeans||,kmeans++,random"
    )]
    kmeans_init: Vec<crate::cli::InitArg>,
    /// Further sidx methods (each a row, k-means|| seeding).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rq-balanced,rq-joint"
    )]
    methods: Vec<crate::cli::MethodArg>,
    /// Relative gain that stops sidx's Lloyd iterations (faiss runs all).
    #[arg(long, default_value_t = DEFAULT_KMEANS_TOL)]
    kmeans_tol: f64,
    /// Beam width of rq-joint and of faiss's beam-trained row.
    #[arg(long, default_value_t = JOINT_BEAM)]
    beam: usize,
    /// Python with numpy and faiss-cpu (see scripts/setup-python.sh).
    #[arg(long, env = "SIDX_PYTHON", default_value = ".venv/bin/python")]
    python: PathBuf,
    /// The faiss side of the benchmark.
    #[arg(long, default_value = "benches/faiss_rq.py")]
    faiss_script: PathBuf,
    /// Skip faiss (ours only).
    #[arg(long)]
    no_faiss: bool,
    /// Real embeddings (.npy float32 [N, D]) instead of synthetic ones;
    /// --items and --dim then come from the file.
    #[arg(long)]
    embeddings: Option<PathBuf>,
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
    /// Beam width of training residuals and encoding.
    beam: usize,
}

pub fn run(b: &QuantizeBench, progress: &Progress) -> Result<()> {
    let dir = super::util::scratch_dir()?;
    let (x, items, dim, emb, what) = match &b.embeddings {
        Some(path) => {
            let (x, items, dim) = sidx::npy::read_matrix(path)?;
            (x, items, dim, path.clone(), path.display().to_string())
        }
        None => {
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
            let emb = dir.join("embeddings.npy");
            sidx::npy::write(&emb, &[b.items, b.dim], &x)?;
            (x, b.items, b.dim, emb, "synthetic items".to_owned())
        }
    };

    let mut runs: Vec<(String, Method, Init)> = b
        .kmeans_init
        .iter()
        .map(|&init| {
            let init_name = init
                .to_possible_value()
                .expect("named")
                .get_name()
                .to_owned();
            (
                format!("sidx rq-kmeans ({init_name})"),
                Method::RqKmeans,
                init.into(),
            )
        })
        .collect();
    runs.extend(b.methods.iter().map(|&m| {
        let m: Method = m.into();
        (format!("sidx {}", m.name()), m, Init::KMeansParallel)
    }));
    let mut rows = Vec::new();
    for (name, method, init) in runs {
        let beam = if method == Method::RqJoint { b.beam } else { 1 };
        let train = TrainConfig {
            layers: b.layers,
            codebook_size: b.codebook_size,
            train_sample: Some(b.train_sample),
            seed: b.seed,
            beam,
            kmeans_iters: b.kmeans_iters,
            kmeans_tol: b.kmeans_tol,
            kmeans_init: init,
            method,
        };
        progress.note(&format!("{name}: training"));
        let t0 = Instant::now();
        let rq = ResidualQuantizer::train(&x, dim, &train, progress)?;
        let train_seconds = t0.elapsed().as_secs_f64();
        progress.note(&format!("{name}: encoding"));
        let t1 = Instant::now();
        let enc = rq.encode_catalog(method, &x, beam, progress);
        let encode_seconds = t1.elapsed().as_secs_f64();
        rows.push(Row {
            name,
            train_seconds,
            encode_seconds,
            mse: enc.mse(),
            threads: Some(rayon::current_num_threads()),
            beam,
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
            ("--beam", b.beam.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect();
        let faiss: Vec<Row> = super::util::python_peer(&b.python, &b.faiss_script, &args)?;
        if faiss.is_empty() {
            bail!("the faiss benchmark printed nothing");
        }
        rows.extend(faiss);
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "RQ {}×{} on {items} × {dim}-d {what}, trained on {}",
        b.layers,
        b.codebook_size,
        b.train_sample.min(items)
    );
    println!(
        "| {:<31} | {:>7} | {:>4} | {:>8} | {:>9} | {:>14} | {:>10} | {:>21} |",
        "implementation",
        "threads",
        "beam",
        "train s",
        "encode s",
        "encode items/s",
        "MSE",
        "MSE / faiss same beam"
    );
    println!("|{}|", ["---"; 8].join("|"));
    for r in &rows {
        let faiss = rows
            .iter()
            .find(|f| f.name.starts_with("faiss") && f.beam == r.beam);
        println!(
            "| {:<31} | {:>7} | {:>4} | {:>8.2} | {:>9.2} | {:>14.0} | {:>10.5} | {:>21} |",
            r.name,
            r.threads.map_or("?".into(), |t| t.to_string()),
            r.beam,
            r.train_seconds,
            r.encode_seconds,
            items as f64 / r.encode_seconds,
            r.mse,
            faiss.map_or("-".into(), |f| format!("{:.4}", r.mse / f.mse))
        );
    }
    Ok(())
}
