//! `sidx quantize` and `sidx encode`: embeddings to SIDs.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{Collisions, InitArg, MethodArg};
use sidx::hourglass::DEFAULT_HEAD_SHARE;
use sidx::pipeline::{EncodeJob, QuantizeJob};
use sidx::progress::Progress;
use sidx::quantize::TrainConfig;

#[derive(Args)]
pub struct QuantizeArgs {
    /// Item embeddings: a numpy .npy float32 array [N, D].
    #[arg(long)]
    embeddings: PathBuf,
    /// Item ids, one per line, in embedding-row order (default: row numbers).
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Quantizer layers L.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Codebook size M of every layer.
    #[arg(long, default_value_t = 256)]
    codebook_size: usize,
    /// Seed of sampling and k-means (same seed, same SIDs).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train the codebooks on a random sample of this many items (0 = all).
    #[arg(long, default_value_t = 100_000)]
    train_sample: usize,
    /// Beam width of encoding (1 = greedy), as faiss's ResidualQuantizer.
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Upper bound on Lloyd iterations per layer.
    #[arg(long, default_value_t = 25)]
    kmeans_iters: usize,
    /// How k-means picks its first centroids.
    #[arg(long, value_enum, default_value = "kmeans++")]
    kmeans_init: InitArg,
    /// rq-kmeans: residual k-means, nearest-centroid codes (the paper's);
    /// rq-balanced: balanced k-means per layer and a balanced assignment —
    /// every code of a layer holds ⌈N/M⌉ or ⌊N/M⌋ items.
    #[arg(long, value_enum, default_value = "rq-kmeans")]
    method: MethodArg,
    /// What to do with items that share a SID.
    #[arg(long, value_enum, default_value = "disambiguate")]
    collisions: Collisions,
    /// Share of layer-2 items the "head" tokens hold in the report.
    #[arg(long, default_value_t = DEFAULT_HEAD_SHARE)]
    head_share: f64,
    /// Output directory: sids.tsv, codebooks.npy, quantizer.json, hourglass.json, hourglass.svg.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct EncodeArgs {
    /// Codebooks written by `sidx quantize` (DIR/codebooks.npy).
    #[arg(long)]
    codebooks: PathBuf,
    /// Item embeddings: a numpy .npy float32 array [N, D] (D as the codebooks).
    #[arg(long)]
    embeddings: PathBuf,
    /// Item ids, one per line (default: row numbers).
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Beam width (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// What to do with items that share a SID.
    #[arg(long, value_enum, default_value = "disambiguate")]
    collisions: Collisions,
    /// Output SID file.
    #[arg(long)]
    out: PathBuf,
}

pub fn quantize(a: QuantizeArgs, progress: &Progress) -> Result<()> {
    let job = QuantizeJob {
        embeddings: a.embeddings,
        ids: a.ids,
        train: TrainConfig {
            layers: a.layers,
            codebook_size: a.codebook_size,
            train_sample: (a.train_sample > 0).then_some(a.train_sample),
            seed: a.seed,
            beam: a.beam,
            kmeans_iters: a.kmeans_iters,
            kmeans_init: a.kmeans_init.into(),
            method: a.method.into(),
        },
        beam: a.beam,
        collisions: a.collisions.into(),
        head_share: a.head_share,
        out: a.out,
    };
    let o = job.run(progress)?;
    print!("{}", o.report.summary());
    println!(
        "trained on {} items in {:.2}s; encoded {} items in {:.2}s (MSE {:.5}); wrote {}",
        o.meta.trained_on,
        o.train_seconds,
        o.meta.items,
        o.encode_seconds,
        o.meta.mse,
        job.out.display()
    );
    Ok(())
}

pub fn encode(a: EncodeArgs, progress: &Progress) -> Result<()> {
    let job = EncodeJob {
        codebooks: a.codebooks,
        embeddings: a.embeddings,
        ids: a.ids,
        beam: a.beam,
        collisions: a.collisions.into(),
        out: a.out,
    };
    let table = job.run(progress)?;
    println!("encoded {} items into {}", table.len(), job.out.display());
    Ok(())
}
