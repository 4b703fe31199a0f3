//! Which files make which model: `--model PATH` opened by its layout, and
//! what a model folder says about itself.

use std::path::Path;

use super::files::{
    DECODER_FILE, DECODER_MERGED_FILE, DECODER_WITH_PAST_FILE, ENCODER_FILE, SINGLE_FILE,
};
use super::runtime::{self, RuntimeOptions};
use super::{BatchModel, GenerateError, OnnxModel, Seq2SeqModel, Sidecar};

/// Opens the generator at `path`: an ONNX file (a decoder-only graph), or
/// an export folder —
/// - an encoder–decoder export (`encoder_model.onnx` and its decoders);
/// - a decoder-only export: `decoder_model_merged.onnx` (one graph, both
///   branches: preferred, as optimum's runtime prefers it), else
///   `decoder_model.onnx` + `decoder_with_past_model.onnx` (split), else
///   `model.onnx` or `decoder_with_past_model.onnx` alone.
///
/// The sidecar defaults to `generator.json` beside the file or in the folder.
pub fn open_model(
    path: &Path,
    sidecar: Option<&Path>,
    opts: &RuntimeOptions,
) -> Result<Box<dyn BatchModel>, GenerateError> {
    if !path.is_dir() {
        return OnnxModel::open(path, sidecar, opts)
            .map(|m| Box::new(m) as Box<dyn BatchModel>)
            .map_err(|e| with_folder_hint(path, e));
    }
    let sidecar = Sidecar::path_or_default(sidecar, path);
    let has = |file: &str| path.join(file).is_file();
    if has(ENCODER_FILE) {
        return Ok(Box::new(Seq2SeqModel::open(path, Some(&sidecar), opts)?));
    }
    if has(DECODER_MERGED_FILE) {
        let merged = path.join(DECODER_MERGED_FILE);
        return Ok(Box::new(OnnxModel::open(&merged, Some(&sidecar), opts)?));
    }
    if has(DECODER_FILE) && has(DECODER_WITH_PAST_FILE) {
        return Ok(Box::new(OnnxModel::open_split(
            &path.join(DECODER_FILE),
            &path.join(DECODER_WITH_PAST_FILE),
            &sidecar,
            opts,
        )?));
    }
    if let Some(single) = [SINGLE_FILE, DECODER_WITH_PAST_FILE]
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.is_file())
    {
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
            "not a model folder sidx knows: a decoder-only export has {SINGLE_FILE}, \
             {DECODER_MERGED_FILE}, or {DECODER_FILE} with {DECODER_WITH_PAST_FILE}; an \
             encoder-decoder export has {ENCODER_FILE} with those decoders; this folder has \
             {found:?}"
        ),
    })
}

/// A file that is one part of a multi-file export fails the single-graph
/// contract; say so, and which folder to pass instead.
fn with_folder_hint(path: &Path, e: GenerateError) -> GenerateError {
    let dir = path.parent().unwrap_or(Path::new("."));
    let whole = if dir.join(ENCODER_FILE).is_file() {
        format!("an encoder-decoder export ({ENCODER_FILE} is beside it)")
    } else if path.file_name().is_some_and(|f| f == DECODER_FILE)
        && dir.join(DECODER_WITH_PAST_FILE).is_file()
    {
        format!("a split decoder-only export ({DECODER_WITH_PAST_FILE} is beside it)")
    } else {
        return e;
    };
    match e {
        GenerateError::Model { path, problem } => GenerateError::Model {
            problem: format!(
                "tried the decoder-only contract: {problem}. This file belongs to {whole}: \
                 pass the folder, --model {}",
                dir.display()
            ),
            path,
        },
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

pub fn model_facts(path: &Path, opts: &RuntimeOptions) -> Result<ModelFacts, GenerateError> {
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
        [DECODER_FILE, DECODER_MERGED_FILE, SINGLE_FILE]
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
            .filter(|_| path.join(ENCODER_FILE).is_file()),
    })
}
