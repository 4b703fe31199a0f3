//! sidx — generative retrieval with semantic IDs (SIDs).
//!
//! Item embeddings are residual-quantized into SIDs ([`quantize`]), whose
//! hourglass shape is measured and mitigated ([`hourglass`]); [`sid`] holds the
//! token types and the SID file format every later stage reads; [`index`]
//! serves them from memory-mapped, versioned files.
//!
//! Library modules are free of gRPC and async runtimes; [`proto`] holds the
//! generated API types for the services.

pub mod catalog;
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
pub mod proto;
pub mod quantize;
pub mod server;
pub mod sid;
pub mod synth;
