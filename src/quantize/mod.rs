//! Residual quantization of item embeddings into SID codes.

mod balanced;
mod codebook;
mod joint;
mod kmeans;
mod rq;
mod store;

pub use balanced::{assign_balanced, balanced_lloyd};
pub use codebook::{Codebook, sq_dist, sq_norm};
pub use kmeans::{Fit, Init, KMeans};
pub use rq::{DEFAULT_KMEANS_TOL, Encoded, ResidualQuantizer, TrainConfig, reconstruction_mse};
pub use store::{CODEBOOKS_FILE, QUANTIZER_FILE, QuantizerMeta};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::npy::NpyError;

/// rq-joint's default beam width (faiss's `max_beam_size` default is 5).
pub const JOINT_BEAM: usize = 5;

/// How the codebooks are trained and the catalog encoded.
// The variants are the methods' names (rq-kmeans, rq-balanced, rq-joint).
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Sequential residual k-means, nearest-centroid codes (the paper's RQ).
    #[default]
    RqKmeans,
    /// Balanced k-means at each layer and a balanced assignment of the
    /// catalog: every code of a layer holds `⌈N/M⌉` or `⌊N/M⌋` items.
    RqBalanced,
    /// Layers trained on beam-search residuals, as faiss's
    /// `ResidualQuantizer`, then refit jointly to the codes a beam search
    /// chooses (faiss's `Train_refine_codebook`); encoded with beam search.
    RqJoint,
}

impl Method {
    /// The name SID headers, manifests and `quantizer.json` record.
    pub fn name(self) -> &'static str {
        match self {
            Method::RqKmeans => "rq-kmeans",
            Method::RqBalanced => "rq-balanced",
            Method::RqJoint => "rq-joint",
        }
    }

    /// The method a recorded name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::RqKmeans, Self::RqBalanced, Self::RqJoint]
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// The encoding beam width when none is given: rq-joint's codebooks are
    /// trained for beam search, the others for nearest centroids.
    pub fn default_beam(self) -> usize {
        match self {
            Method::RqKmeans | Method::RqBalanced => 1,
            Method::RqJoint => JOINT_BEAM,
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
