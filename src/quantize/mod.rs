//! Residual quantization of item embeddings into SID codes.

mod codebook;
mod kmeans;
mod rq;
mod store;

pub use codebook::{Codebook, sq_dist, sq_norm};
pub use kmeans::{Fit, Init, KMeans};
pub use rq::{Encoded, ResidualQuantizer, TrainConfig, reconstruction_mse};
pub use store::{CODEBOOKS_FILE, QUANTIZER_FILE, QuantizerMeta};

use std::path::PathBuf;

use crate::npy::NpyError;

/// Errors of training, encoding and loading quantizers.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error(transparent)]
    Io(#[from] crate::fsx::FsError),
}

/// Refuses embeddings with NaN or infinite values, naming the first bad row.
pub fn check_finite(x: &[f32], dim: usize) -> Result<(), String> {
    match x
        .chunks_exact(dim)
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        Some(row) => Err(format!(
            "row {row} holds a NaN or infinite value; clean the embeddings first"
        )),
        None => Ok(()),
    }
}
