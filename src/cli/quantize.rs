//! `sidx quantize` and `sidx encode`: embeddings to SIDs.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{Collisions, InitArg, MethodArg};
use sidx::hourglass::DEFAULT_HEAD_SHARE;
use sidx::hourglass::compare::{self, Compared};
use sidx::pipeline::{EncodeJob, QuantizeJob};
use sidx::progress::Progress;
use sidx::quantize::{DEFAULT_KMEANS_TOL, Method, QuantizerMeta, TrainConfig};
use sidx::shards::EmbeddingColumns;

/// Where the embeddings are: a .npy array or Parquet shards.
#[derive(Args)]
pub struct EmbeddingArgs {
    /// Item embeddings: a numpy .npy float32 array [N, D], or Parquet — a
    /// .parquet file or a folder of shards with a list<float32> (or
    /// fixed_size_list) column and an id column, streamed in record batches.
    #[arg(long)]
    embeddings: PathBuf,
    /// Item ids of .npy rows, one per line (default: row numbers).
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Parquet: the embedding column [default: "embedding", else the only list column].
    #[arg(long)]
    embedding_column: Option<String>,
    /// Parquet: the item id column [default: "id" or "item_id", else row numbers].
    #[arg(long)]
    id_column: Option<String>,
}

impl EmbeddingArgs {
    fn columns(&self) -> EmbeddingColumns {
        EmbeddingColumns {
            embedding: self.embedding_column.clone(),
            id: self.id_column.clone(),
        }
    }
}

#[derive(Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    input: EmbeddingArgs,
    /// Quantizer layers L.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Codebook size M of every layer.
    #[arg(long, default_value_t = 256)]
    codebook_size: usize,
    /// Seed of sampling and k-means (same seed, same SIDs).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train once per seed into OUT/seed-S/ and report the spread over the
    /// seeds (one comparison table, OUT/seeds.json and OUT/seeds.svg).
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "seed")]
    seeds: Vec<u64>,
    /// Train the codebooks on a random sample of this many items (0 = all).
    #[arg(long, default_value_t = 100_000)]
    train_sample: usize,
    /// Beam width of training residuals and of encoding (1 = greedy), as
    /// faiss's ResidualQuantizer [default: 5 for rq-joint, else 1].
    #[arg(long)]
    beam: Option<usize>,
    /// Upper bound on Lloyd iterations per layer.
    #[arg(long, default_value_t = 25)]
    kmeans_iters: usize,
    /// Stop a layer's Lloyd iterations once one lowers the mean squared
    /// error by less than this fraction (0 = run all --kmeans-iters).
    #[arg(long, default_value_t = DEFAULT_KMEANS_TOL)]
    kmeans_tol: f64,
    /// How k-means picks its first centroids.
    #[arg(long, value_enum, default_value = "kmeans||")]
    kmeans_init: InitArg,
    /// rq-kmeans: residual k-means, nearest-centroid codes (the paper's);
    /// rq-balanced: balanced k-means per layer and a balanced assignment —
    /// every code of a layer holds ⌈N/M⌉ or ⌊N/M⌋ items; rq-joint: layers
    /// trained on beam-search residuals and refit jointly (faiss's
    /// ResidualQuantizer), beam-search codes.
    #[arg(long, value_enum, default_value = "rq-kmeans")]
    method: MethodArg,
    /// What to do with items that share a SID.
    #[arg(long, value_enum, default_value = "disambiguate")]
    collisions: Collisions,
    /// Share of layer-2 items the "head" tokens hold in the report.
    #[arg(long, default_value_t = DEFAULT_HEAD_SHARE)]
    head_share: f64,
    /// Output directory: sids.tsv, codes.npy + ids.txt (`sidx index build --sids DIR` reads
    /// these), codebooks.npy, quantizer.json, hourglass.json, hourglass.svg.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct EncodeArgs {
    /// Codebooks written by `sidx quantize` (DIR/codebooks.npy).
    #[arg(long)]
    codebooks: PathBuf,
    /// D as the codebooks'.
    #[command(flatten)]
    input: EmbeddingArgs,
    /// Beam width (1 = greedy) [default: the one quantizer.json beside the
    /// codebooks records, else 1].
    #[arg(long)]
    beam: Option<usize>,
    /// What to do with items that share a SID.
    #[arg(long, value_enum, default_value = "disambiguate")]
    collisions: Collisions,
    /// Output SID file: TSV, or Parquet (id, codes list<int32>) if it ends in .parquet.
    #[arg(long)]
    out: PathBuf,
}

pub fn quantize(a: QuantizeArgs, progress: &Progress) -> Result<()> {
    if !a.seeds.is_empty() {
        return quantize_seeds(a, progress);
    }
    let job = job(&a, a.seed, a.out.clone());
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

/// `--seeds`: one run per seed, then their spread.
fn quantize_seeds(a: QuantizeArgs, progress: &Progress) -> Result<()> {
    if let Some((i, s)) = a
        .seeds
        .iter()
        .enumerate()
        .find(|(i, s)| a.seeds[..*i].contains(s))
    {
        anyhow::bail!("--seeds lists seed {s} twice (entry {})", i + 1);
    }
    let mut sets = Vec::with_capacity(a.seeds.len());
    for &seed in &a.seeds {
        let out = a.out.join(format!("seed-{seed}"));
        let o = job(&a, seed, out.clone()).run(progress)?;
        println!(
            "seed {seed}: trained in {:.2}s, encoded in {:.2}s, MSE {:.5}; wrote {}",
            o.train_seconds,
            o.encode_seconds,
            o.meta.mse,
            out.display()
        );
        sets.push(Compared {
            name: format!("seed-{seed}"),
            method: Some(o.meta.method.name().to_owned()),
            mse: Some(o.meta.mse),
            report: o.report,
        });
    }
    print!("{}", compare::table(&sets));
    print!("{}", compare::spread(&sets));
    let json = serde_json::to_vec_pretty(&sets)?;
    sidx::fsx::write_atomic(&a.out.join("seeds.json"), |w| w.write_all(&json))?;
    let svg = compare::render(&sets);
    sidx::fsx::write_atomic(&a.out.join("seeds.svg"), |w| w.write_all(svg.as_bytes()))?;
    Ok(())
}

/// The quantize job `a` describes, with `seed` and `out`.
fn job(a: &QuantizeArgs, seed: u64, out: PathBuf) -> QuantizeJob {
    let method: Method = a.method.into();
    let beam = a.beam.unwrap_or(method.default_beam());
    QuantizeJob {
        embeddings: a.input.embeddings.clone(),
        ids: a.input.ids.clone(),
        columns: a.input.columns(),
        train: TrainConfig {
            layers: a.layers,
            codebook_size: a.codebook_size,
            train_sample: (a.train_sample > 0).then_some(a.train_sample),
            seed,
            beam,
            kmeans_iters: a.kmeans_iters,
            kmeans_tol: a.kmeans_tol,
            kmeans_init: a.kmeans_init.into(),
            method,
        },
        beam,
        collisions: a.collisions.into(),
        head_share: a.head_share,
        out,
    }
}

pub fn encode(a: EncodeArgs, progress: &Progress) -> Result<()> {
    let recorded_beam = QuantizerMeta::beside(&a.codebooks).map(|m| m.beam);
    let job = EncodeJob {
        codebooks: a.codebooks,
        columns: a.input.columns(),
        embeddings: a.input.embeddings,
        ids: a.input.ids,
        beam: a.beam.or(recorded_beam).unwrap_or(1),
        collisions: a.collisions.into(),
        out: a.out,
    };
    let table = job.run(progress)?;
    println!("encoded {} items into {}", table.len(), job.out.display());
    Ok(())
}
