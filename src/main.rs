//! The `sidx` command line.

mod cli;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use sidx::hourglass::{DEFAULT_HEAD_SHARE, HourglassReport, Strategy};
use sidx::pipeline::{self, QuantizeJob};
use sidx::progress::Progress;
use sidx::quantize::TrainConfig;
use sidx::sid::{CollisionMode, SidTable};
use sidx::synth::SynthConfig;

/// sidx — semantic IDs for generative retrieval: residual quantization,
/// hourglass diagnostics and variable-length SIDs.
#[derive(Parser)]
#[command(name = "sidx", version, propagate_version = true)]
struct Cli {
    /// Worker threads for numeric work (default: all cores).
    #[arg(long, global = true, env = "SIDX_THREADS")]
    threads: Option<usize>,
    /// Log filter, e.g. `info` or `sidx=debug`.
    #[arg(long, global = true, env = "SIDX_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train RQ codebooks on item embeddings and write every item's SID.
    Quantize(QuantizeArgs),
    /// Encode items with stored codebooks into a SID file.
    Encode(EncodeArgs),
    /// Report the hourglass statistics of a SID file.
    Hourglass(HourglassArgs),
    /// Apply the paper's fixes: drop layer 2, or drop it behind the top-K / top-P tokens.
    Mitigate(MitigateArgs),
    /// Build, verify, query and update SID indexes.
    #[command(subcommand)]
    Index(cli::index::IndexCommand),
    /// Run a gRPC service.
    #[command(subcommand)]
    Serve(cli::serve::ServeCommand),
    /// Generate items for one user's history with an ONNX generator, constrained by the index.
    Generate(cli::generate::GenerateArgs),
    /// Check running services: health, then one real query each (for `helm test`).
    Probe(cli::probe::ProbeArgs),
    /// Evaluate a generator on held-out interactions: Recall/NDCG@K, head/tail, invalid SIDs.
    Eval(cli::eval::EvalArgs),
    /// Write a synthetic long-tailed catalog of embeddings (.npy) and its ids.
    Synth(SynthArgs),
    /// Run the whole SID pipeline on a built-in synthetic catalog.
    Demo(cli::demo::DemoArgs),
    /// Benchmarks that print a table.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum Collisions {
    /// Append a layer-(L+1) token 0, 1, … to items that share a SID (TIGER).
    Disambiguate,
    /// Keep shared SIDs; lookups return every item behind them.
    Share,
}

impl From<Collisions> for CollisionMode {
    fn from(c: Collisions) -> Self {
        match c {
            Collisions::Disambiguate => CollisionMode::Disambiguate,
            Collisions::Share => CollisionMode::Share,
        }
    }
}

#[derive(Args)]
struct QuantizeArgs {
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
    kmeans_init: cli::InitArg,
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
struct EncodeArgs {
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

#[derive(Args)]
struct HourglassArgs {
    /// SID file (TSV `item_id<TAB>layer:code …`).
    #[arg(long)]
    sids: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw the hourglass into this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Share of layer-2 items the "head" tokens hold.
    #[arg(long, default_value_t = DEFAULT_HEAD_SHARE)]
    head_share: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    /// Drop layer 2 for every item.
    DropLayer2,
    /// Drop layer 2 for items behind the K most frequent layer-2 tokens (--k).
    TopK,
    /// Drop layer 2 for items behind tokens holding more than a share P of items (--p).
    TopP,
}

#[derive(Args)]
struct MitigateArgs {
    /// Input SID file (quantizer SIDs, not already mitigated).
    #[arg(long)]
    sids: PathBuf,
    /// Output SID file (variable-length SIDs).
    #[arg(long)]
    out: PathBuf,
    /// Which layer-2 tokens to drop.
    #[arg(long, value_enum)]
    strategy: StrategyArg,
    /// K of top-k.
    #[arg(long, required_if_eq("strategy", "top-k"))]
    k: Option<usize>,
    /// P of top-p, a share in (0, 1).
    #[arg(long, required_if_eq("strategy", "top-p"))]
    p: Option<f64>,
    /// How to resolve the collisions dropping creates (default: as the input file says).
    #[arg(long, value_enum)]
    collisions: Option<Collisions>,
    /// Share of layer-2 items the "head" tokens hold in the reports.
    #[arg(long, default_value_t = DEFAULT_HEAD_SHARE)]
    head_share: f64,
}

#[derive(Args)]
struct SynthArgs {
    /// Number of items.
    #[arg(long, default_value_t = 20_000)]
    items: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 512)]
    clusters: usize,
    /// Zipf exponent of cluster sizes.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Log-normal σ of the jitter of residual sizes.
    #[arg(long, default_value_t = 0.3)]
    tail: f64,
    /// Share of items whose residual is an outlier.
    #[arg(long, default_value_t = 0.1)]
    outlier_share: f64,
    /// How much larger outlier residuals are than the others.
    #[arg(long, default_value_t = 8.0)]
    outlier_scale: f64,
    /// Directions outlier residuals lie along.
    #[arg(long, default_value_t = 256)]
    outlier_modes: usize,
    /// Median residual size relative to the spread of cluster centres.
    #[arg(long, default_value_t = 0.1)]
    residual_scale: f64,
    /// Seed (same seed, same catalog).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output .npy file; ids go to the same path with extension .ids.txt.
    #[arg(long)]
    out: PathBuf,
}

impl SynthArgs {
    fn config(&self) -> SynthConfig {
        SynthConfig {
            items: self.items,
            dim: self.dim,
            clusters: self.clusters,
            zipf: self.zipf,
            tail: self.tail,
            outlier_share: self.outlier_share,
            outlier_scale: self.outlier_scale,
            outlier_modes: self.outlier_modes,
            residual_scale: self.residual_scale,
            seed: self.seed,
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    if let Some(t) = cli.threads {
        // Fails only if a pool already exists, which cannot happen before this point.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn run(command: Command) -> Result<()> {
    let progress = Progress::stderr();
    match command {
        Command::Quantize(a) => {
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
                },
                beam: a.beam,
                collisions: a.collisions.into(),
                head_share: a.head_share,
                out: a.out,
            };
            let o = job.run(&progress)?;
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
        }
        Command::Encode(a) => {
            let job = pipeline::EncodeJob {
                codebooks: a.codebooks,
                embeddings: a.embeddings,
                ids: a.ids,
                beam: a.beam,
                collisions: a.collisions.into(),
                out: a.out,
            };
            let table = job.run(&progress)?;
            println!("encoded {} items into {}", table.len(), job.out.display());
        }
        Command::Hourglass(a) => {
            let table = SidTable::read(&a.sids)?;
            let report = HourglassReport::measure(&table, a.head_share);
            if let Some(svg) = &a.svg {
                let doc = sidx::hourglass::render_svg(&table, &report);
                sidx::fsx::write_atomic(svg, |w| w.write_all(doc.as_bytes()))?;
            }
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.summary());
            }
        }
        Command::Mitigate(a) => {
            let strategy = match a.strategy {
                StrategyArg::DropLayer2 => Strategy::DropLayer2,
                StrategyArg::TopK => Strategy::TopK(a.k.context("--k is required")?),
                StrategyArg::TopP => Strategy::TopP(a.p.context("--p is required")?),
            };
            let (before, after) = pipeline::mitigate_file(
                &a.sids,
                &a.out,
                strategy,
                a.collisions.map(Into::into),
                a.head_share,
            )?;
            println!("before:\n{}", before.summary());
            println!("after {strategy}:\n{}", after.summary());
            println!("wrote {}", a.out.display());
        }
        Command::Synth(a) => {
            let cfg = a.config();
            let x = sidx::synth::generate(&cfg);
            let ids_path = a.out.with_extension("ids.txt");
            let ids = sidx::synth::ids(cfg.items).join("\n") + "\n";
            let mut staging = sidx::fsx::Staging::new();
            staging.write(&a.out, |w| {
                sidx::npy::write_to(w, &[cfg.items, cfg.dim], &x)
            })?;
            staging.write(&ids_path, |w| w.write_all(ids.as_bytes()))?;
            staging.commit()?;
            println!(
                "wrote {} ({} × {}) and {}",
                a.out.display(),
                cfg.items,
                cfg.dim,
                ids_path.display()
            );
        }
        Command::Index(c) => cli::index::run(c)?,
        Command::Serve(c) => cli::serve::run(c)?,
        Command::Generate(a) => cli::generate::run(&a)?,
        Command::Probe(a) => cli::probe::run(&a)?,
        Command::Eval(a) => cli::eval::run(&a, &progress)?,
        Command::Demo(a) => cli::demo::run(&a, &progress)?,
        Command::Bench(b) => cli::bench::run(b, &progress)?,
    }
    Ok(())
}
