//! The subcommands: arguments parsed by clap, turned into library calls.

pub mod demo;
pub mod demo_serve;
pub mod eval;
pub mod generate;
pub mod generator;
pub mod hourglass;
pub mod index;
pub mod probe;
pub mod quantize;
pub mod serve;
pub mod synth;

use clap::ValueEnum;
use sidx::quantize::Init;
use sidx::sid::CollisionMode;

/// k-means seeding, as a command-line value.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InitArg {
    /// k-means++ (centroids drawn ∝ squared distance).
    #[value(name = "kmeans++")]
    KMeansPlusPlus,
    /// k-means|| (a few oversampling passes, then k-means++ over the candidates).
    #[value(name = "kmeans||")]
    KMeansParallel,
    /// Distinct random points, as faiss does.
    Random,
}

impl From<InitArg> for Init {
    fn from(a: InitArg) -> Self {
        match a {
            InitArg::KMeansPlusPlus => Init::KMeansPlusPlus,
            InitArg::KMeansParallel => Init::KMeansParallel,
            InitArg::Random => Init::Random,
        }
    }
}

/// The quantization method, as a command-line value.
// The variants are the methods' names (rq-kmeans, rq-balanced, rq-joint).
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, ValueEnum)]
pub enum MethodArg {
    RqKmeans,
    RqBalanced,
    RqJoint,
}

impl From<MethodArg> for sidx::quantize::Method {
    fn from(a: MethodArg) -> Self {
        match a {
            MethodArg::RqKmeans => Self::RqKmeans,
            MethodArg::RqBalanced => Self::RqBalanced,
            MethodArg::RqJoint => Self::RqJoint,
        }
    }
}

/// What to do with items that share a SID, as a command-line value.
#[derive(Clone, Copy, ValueEnum)]
pub enum Collisions {
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

impl From<CollisionMode> for Collisions {
    fn from(c: CollisionMode) -> Self {
        match c {
            CollisionMode::Disambiguate => Collisions::Disambiguate,
            CollisionMode::Share => Collisions::Share,
        }
    }
}
