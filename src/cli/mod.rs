//! Subcommands with more than a few lines of glue.

pub mod bench;
pub mod bench_generate;
pub mod bench_grpc;
pub mod bench_index;
pub mod demo;
pub mod demo_serve;
pub mod eval;
pub mod generate;
pub mod index;
pub mod probe;
pub mod serve;

use clap::ValueEnum;
use sidx::quantize::Init;

/// k-means seeding, as a command-line value.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InitArg {
    /// k-means++ (centroids drawn ∝ squared distance).
    #[value(name = "kmeans++")]
    KMeansPlusPlus,
    /// Distinct random points, as faiss does.
    Random,
}

impl From<InitArg> for Init {
    fn from(a: InitArg) -> Self {
        match a {
            InitArg::KMeansPlusPlus => Init::KMeansPlusPlus,
            InitArg::Random => Init::Random,
        }
    }
}
