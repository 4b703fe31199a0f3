//! Generation of SIDs: beam search constrained by the index over a per-step
//! model trait ([`StepModel`], no runtime dependency); the engine
//! ([`engine`]) that runs a [`BatchModel`] on its own thread fed by a bounded
//! queue, publishing its health; the ONNX Runtime model ([`onnx`],
//! [`runtime`]) with its sidecar; and a synthetic model for tests and benches.

mod beam;
pub mod engine;
pub mod files;
mod float;
mod gather;
mod health;
mod limits;
mod lse;
mod model;
pub mod onnx;
mod open;
mod resident;
pub mod runtime;
mod scores;
pub mod seq2seq;
mod sidecar;
pub mod synthetic;
mod tokenizer;
pub mod validate;

use std::path::PathBuf;

pub use beam::{
    BeamConfig, BeamResult, Generated, ModelError, Row, Search, StepModel, beam_search,
};
pub use engine::{GenerationResponse, Generator, ResultItem};
pub use float::Float;
pub use health::ModelHealth;
pub use limits::GeneratorLimits;
pub use lse::log_sum_exp;
pub use model::BatchModel;
pub use onnx::{Contract, OnnxModel};
pub use open::{ModelFacts, model_facts, open_model};
pub use runtime::{Decoding, Device, RuntimeOptions};
pub use seq2seq::Seq2SeqModel;
pub use sidecar::{PromptTemplate, SidTokenNames, SidTokensInit, Sidecar, SidecarInit};
pub use validate::{GenerationRequest, History, RequestError, ValidRequest};

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
