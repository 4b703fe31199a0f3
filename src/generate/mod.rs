//! Generation of SIDs: beam search constrained by the index over a per-step
//! model trait ([`StepModel`], no runtime dependency); the engine
//! ([`engine`]) that runs a [`BatchModel`] on its own thread fed by a bounded
//! queue, publishing its health; the ONNX Runtime model ([`onnx`],
//! [`runtime`]) with its sidecar; and a synthetic model for tests and benches.

mod beam;
pub mod engine;
mod health;
mod limits;
mod model;
pub mod onnx;
pub mod runtime;
pub mod seq2seq;
mod sidecar;
pub mod synthetic;
pub mod validate;

use std::path::PathBuf;

pub use beam::{
    BeamConfig, BeamResult, Generated, ModelError, Row, Search, StepModel, beam_search,
};
pub use engine::{GenerationResponse, Generator, ResultItem};
pub use health::ModelHealth;
pub use limits::GeneratorLimits;
pub use model::BatchModel;
pub use onnx::{Contract, Float, OnnxModel};
pub use runtime::{Device, RuntimeOptions};
pub use seq2seq::Seq2SeqModel;
pub use sidecar::Sidecar;
pub use validate::{GenerationRequest, History, RequestError, ValidRequest};

/// Opens the generator at `path`: an ONNX file (a decoder-only model), or
/// an export folder — optimum's seq2seq layout (`encoder_model.onnx` and its
/// decoders) or a folder holding `model.onnx`. The sidecar defaults to
/// `generator.json` beside the file or in the folder.
pub fn open_model(
    path: &std::path::Path,
    sidecar: Option<&std::path::Path>,
    opts: &RuntimeOptions,
) -> Result<Box<dyn BatchModel>, GenerateError> {
    if !path.is_dir() {
        return Ok(Box::new(OnnxModel::open(path, sidecar, opts)?));
    }
    let sidecar = sidecar
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| path.join("generator.json"));
    if path.join(seq2seq::ENCODER_FILE).is_file() {
        return Ok(Box::new(Seq2SeqModel::open(path, Some(&sidecar), opts)?));
    }
    let single = path.join("model.onnx");
    if single.is_file() {
        return Ok(Box::new(OnnxModel::open(&single, Some(&sidecar), opts)?));
    }
    let found: Vec<String> = std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".onnx"))
                .collect()
        })
        .unwrap_or_default();
    Err(GenerateError::Model {
        path: path.to_path_buf(),
        problem: format!(
            "not a model folder sidx knows: it needs model.onnx (a decoder-only export) or \
             {} with {} (+ {}) or {} (an encoder-decoder export); it has {found:?}",
            seq2seq::ENCODER_FILE,
            seq2seq::DECODER_FILE,
            seq2seq::DECODER_WITH_PAST_FILE,
            seq2seq::DECODER_MERGED_FILE
        ),
    })
}

/// Errors of the generator, each naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The ONNX Runtime library or an execution provider (start-up).
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The model file or its contract (start-up).
    #[error("model {path}: {problem}", path = .path.display())]
    Model { path: PathBuf, problem: String },
    /// The sidecar file (start-up).
    #[error("sidecar {path}: {problem}", path = .path.display())]
    Sidecar { path: PathBuf, problem: String },
    /// The served index does not fit the model.
    #[error("the index does not fit the model: {0}")]
    IndexMismatch(String),
    /// A request broke a rule.
    #[error(transparent)]
    InvalidArgument(#[from] RequestError),
    /// The queue is full.
    #[error("overloaded: {0} requests already queued")]
    Overloaded(usize),
    /// The request's deadline passed before it ran.
    #[error("deadline exceeded after {0:?} in the queue")]
    DeadlineExceeded(std::time::Duration),
    /// The model failed while running.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The model thread has stopped.
    #[error("the generator has stopped")]
    Stopped,
}
