//! The `sidx` command line: parses the arguments and dispatches to [`cli`]
//! (and [`bench`] for `sidx bench …`).

mod bench;
mod cli;

use anyhow::Result;
use clap::{Parser, Subcommand};

use sidx::progress::Progress;

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
    Quantize(cli::quantize::QuantizeArgs),
    /// Encode items with stored codebooks into a SID file.
    Encode(cli::quantize::EncodeArgs),
    /// Report the hourglass statistics of a SID file.
    Hourglass(cli::hourglass::HourglassArgs),
    /// Apply the paper's fixes: drop layer 2, or drop it behind the top-K / top-P tokens.
    Mitigate(cli::hourglass::MitigateArgs),
    /// Build, verify, query and update SID indexes.
    #[command(subcommand)]
    Index(cli::index::IndexCommand),
    /// Run a gRPC service.
    #[command(subcommand)]
    Serve(cli::serve::ServeCommand),
    /// Generate items for one user's history with an ONNX generator, constrained by the index.
    Generate(cli::generate::GenerateArgs),
    /// Set up a generator model: `init` writes its sidecar.
    #[command(subcommand)]
    Generator(cli::generator::GeneratorCommand),
    /// Check running services: health, then one real query each (for `helm test`).
    Probe(cli::probe::ProbeArgs),
    /// Evaluate a generator on held-out interactions: Recall/NDCG@K, head/tail, invalid SIDs.
    Eval(cli::eval::EvalArgs),
    /// Write a synthetic long-tailed catalog of embeddings (.npy) and its ids.
    Synth(cli::synth::SynthArgs),
    /// Run the whole SID pipeline on a built-in synthetic catalog.
    Demo(cli::demo::DemoArgs),
    /// Benchmarks that print a table.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
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
        Command::Quantize(a) => cli::quantize::quantize(a, &progress),
        Command::Encode(a) => cli::quantize::encode(a, &progress),
        Command::Hourglass(a) => cli::hourglass::hourglass(&a),
        Command::Mitigate(a) => cli::hourglass::mitigate(&a),
        Command::Synth(a) => cli::synth::run(&a),
        Command::Index(c) => cli::index::run(c),
        Command::Serve(c) => cli::serve::run(c),
        Command::Generate(a) => cli::generate::run(&a),
        Command::Generator(c) => cli::generator::run(c),
        Command::Probe(a) => cli::probe::run(&a),
        Command::Eval(a) => cli::eval::run(&a, &progress),
        Command::Demo(a) => cli::demo::run(&a, &progress),
        Command::Bench(b) => bench::run(b, &progress),
    }
}
