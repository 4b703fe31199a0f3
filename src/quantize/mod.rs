//! Residual quantization of item embeddings into SID codes.

mod balanced;
mod codebook;
mod kmeans;
mod rq;
mod store;

pub use balanced::{assign_balanced, balanced_lloyd};
pub use codebook::{Codebook, sq_dist, sq_norm};
pub use kmeans::{Fit, Init, KMeans};
pub use rq::{Encoded, ResidualQuantizer, TrainConfig, reconstruction_mse};
pub use store::{CODEBOOKS_FILE, QUANTIZER_FILE, QuantizerMeta};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::npy::NpyError;

/// How the codebooks are trained and the catalog encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Sequential residual k-means, nearest-centroid codes (the paper's RQ).
    #[default]
    RqKmeans,
    /// Balanced k-means at each layer and a balanced assignment of the
    /// catalog: every code of a layer holds `⌈N/M⌉` or `⌊N/M⌋` items.
    RqBalanced,
}

impl Method {
    /// The name SID headers, manifests and `quantizer.json` record.
    pub fn name(self) -> &'static str {
        match self {
            Method::RqKmeans => "rq-kmeans",
            Method::RqBalanced => "rq-balanced",
        }
    }
}

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
