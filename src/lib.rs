//! sidx — generative retrieval with semantic IDs (SIDs).
//!
//! Item embeddings are residual-quantized into SIDs ([`quantize`]), whose
//! hourglass shape is measured and mitigated ([`hourglass`]); [`sid`] holds the
//! token types and the SID file format every later stage reads; [`index`]
//! serves them from memory-mapped, versioned files.
//!
//! Library modules are free of gRPC and async runtimes: only [`proto`] (the
//! generated API types), [`server`] and [`client`] use tonic and tokio, and
//! they exist with the `grpc` feature (on by default) alone — CI builds the
//! library without it, so the compiler holds that line.

pub mod catalog;
#[cfg(feature = "grpc")]
pub mod client;
pub mod eval;
pub mod failpoint;
pub mod fsx;
pub mod generate;
pub mod hourglass;
pub mod index;
pub mod npy;
pub mod pipeline;
pub mod progress;
#[cfg(feature = "grpc")]
pub mod proto;
pub mod quantize;
#[cfg(feature = "grpc")]
pub mod server;
pub mod shards;
pub mod sid;
pub mod synth;
