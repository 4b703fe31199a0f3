//! `sidx bench …`: measurements that print a table, peers in the same run
//! (the benches themselves live in `src/bench/`).

use anyhow::Result;
use clap::Subcommand;

use crate::bench;
use sidx::progress::Progress;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// RQ training and greedy encoding, sidx against faiss-cpu's ResidualQuantizer.
    Quantize(crate::bench::quantize::QuantizeBench),
    /// Index build, size, open and lookup speed against trie peers.
    Index(crate::bench::index::IndexBench),
    /// Load against `sidx serve index`: throughput, latency, overload, swaps under load.
    Grpc(crate::bench::grpc::GrpcBench),
    /// Constrained beam search: the constraint's cost per step, and end to end with an ONNX generator.
    Generate(crate::bench::generate::GenerateBench),
}

pub fn run(cmd: BenchCommand, progress: &Progress) -> Result<()> {
    match cmd {
        BenchCommand::Quantize(b) => bench::quantize::run(&b, progress),
        BenchCommand::Index(b) => bench::index::run(&b, progress),
        BenchCommand::Generate(b) => bench::generate::run(&b, progress),
        BenchCommand::Grpc(b) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(bench::grpc::run(&b, progress)),
    }
}
