//! The file names of the ONNX export layouts sidx opens (optimum's).

/// A decoder-only graph with past in and present out (optimum-onnx's
/// `text-generation-with-past`), or one without a cache.
pub const SINGLE_FILE: &str = "model.onnx";
/// The encoder of an encoder–decoder export.
pub const ENCODER_FILE: &str = "encoder_model.onnx";
/// The first-step decoder: no past in (present out, when cached).
pub const DECODER_FILE: &str = "decoder_model.onnx";
/// The decoder for every later step.
pub const DECODER_WITH_PAST_FILE: &str = "decoder_with_past_model.onnx";
/// Both decoders in one graph; `use_cache_branch` picks the branch.
pub const DECODER_MERGED_FILE: &str = "decoder_model_merged.onnx";
