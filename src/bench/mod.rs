//! `sidx bench …`: benchmarks that each print a table, with their peers
//! measured in the same run. Fixtures shared with the Criterion benches are
//! in [`fixtures`], helpers in [`util`]; nothing here is part of the library.

pub mod fixtures;
pub mod generate;
pub mod grpc;
pub mod hf;
pub mod index;
pub mod quantize;
pub mod scale;
pub mod util;

use anyhow::Result;
use clap::Subcommand;

use sidx::progress::Progress;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// RQ training and greedy encoding, sidx against faiss-cpu's ResidualQuantizer.
    Quantize(quantize::QuantizeBench),
    /// Index build, size, open and lookup speed against trie peers.
    Index(index::IndexBench),
    /// A format-2 index of up to a billion SIDs built with bounded memory (external sort), opened and queried.
    IndexScale(scale::ScaleBench),
    /// Load against `sidx serve index`: throughput, latency, overload, swaps under load.
    Grpc(grpc::GrpcBench),
    /// Constrained beam search: the constraint's cost per step, and end to end with an ONNX generator.
    Generate(generate::GenerateBench),
    /// sidx against Hugging Face generate on the same models (tests/fixtures/hf), cached and uncached.
    Hf(hf::HfBench),
}

pub fn run(cmd: BenchCommand, progress: &Progress) -> Result<()> {
    match cmd {
        BenchCommand::Quantize(b) => quantize::run(&b, progress),
        BenchCommand::Index(b) => index::run(&b, progress),
        BenchCommand::IndexScale(b) => scale::run(&b, progress),
        BenchCommand::Generate(b) => generate::run(&b, progress),
        BenchCommand::Hf(b) => hf::run(&b, progress),
        BenchCommand::Grpc(b) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(grpc::run(&b, progress)),
    }
}
