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
pub use sidecar::{SidTokenNames, SidTokensInit, Sidecar, SidecarInit};
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
        return OnnxModel::open(path, sidecar, opts)
            .map(|m| Box::new(m) as Box<dyn BatchModel>)
            .map_err(|e| with_folder_hint(path, e));
    }
    let sidecar = Sidecar::path_or_default(sidecar, path);
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

/// A file that is one part of an encoder–decoder export fails the
/// decoder-only contract; say so, and which folder to pass instead.
fn with_folder_hint(path: &std::path::Path, e: GenerateError) -> GenerateError {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    match e {
        GenerateError::Model { path, problem } if dir.join(seq2seq::ENCODER_FILE).is_file() => {
            GenerateError::Model {
                problem: format!(
                    "tried the decoder-only contract: {problem}. This file belongs to an \
                     encoder-decoder export ({} is beside it): pass the folder, --model {}",
                    seq2seq::ENCODER_FILE,
                    dir.display()
                ),
                path,
            }
        }
        e => e,
    }
}

/// What a model folder or file says about itself, for `sidx generator init`:
/// the vocabulary size (the logits' last dimension, else `vocab_size` of
/// `config.json`), the longest sequence and the decoder-start token (from
/// `config.json`, when it has them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelFacts {
    pub vocab_size: Option<u32>,
    pub max_positions: Option<u32>,
    pub decoder_start_id: Option<u32>,
}

pub fn model_facts(
    path: &std::path::Path,
    opts: &RuntimeOptions,
) -> Result<ModelFacts, GenerateError> {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    let config: Option<serde_json::Value> = std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let field = |names: &[&str]| {
        names.iter().find_map(|n| {
            config
                .as_ref()?
                .get(*n)?
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
        })
    };
    let graph = if path.is_dir() {
        [
            seq2seq::DECODER_FILE,
            seq2seq::DECODER_MERGED_FILE,
            "model.onnx",
        ]
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.is_file())
    } else {
        Some(path.to_path_buf())
    };
    let from_graph = match graph {
        Some(g) => {
            let (session, _) = runtime::open_session(&g, opts)?;
            session
                .outputs()
                .iter()
                .find(|o| o.name() == "logits")
                .and_then(|o| match o.dtype() {
                    ort::value::ValueType::Tensor { shape, .. } => shape.last().copied(),
                    _ => None,
                })
                .filter(|&v| v > 0)
                .map(|v| v as u32)
        }
        None => None,
    };
    Ok(ModelFacts {
        vocab_size: from_graph.or_else(|| field(&["vocab_size"])),
        max_positions: field(&["n_positions", "max_position_embeddings"]),
        decoder_start_id: field(&["decoder_start_token_id"])
            .filter(|_| path.join(seq2seq::ENCODER_FILE).is_file()),
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
