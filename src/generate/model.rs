//! What the engine runs: a model that opens one search per batch of prompts.
//! The ONNX decoder ([`super::OnnxModel`]) is one; a deterministic synthetic
//! model ([`super::synthetic`]) is another, for tests and benches.

use std::path::Path;

use super::beam::StepModel;
use super::runtime::Device;
use super::sidecar::Sidecar;

/// A generator model, owned by the engine's model thread.
pub trait BatchModel: Send {
    /// Vocabulary, special tokens and prompt format.
    fn sidecar(&self) -> &Sidecar;
    /// The provider that really runs the model.
    fn device(&self) -> Device;
    /// The file or folder the model came from (errors and logs name it).
    fn source(&self) -> &Path;
    /// A search over these prompts (one per request, vocabulary ids): the
    /// beam search calls it once per step.
    fn batch(&mut self, prompts: Vec<Vec<i64>>) -> Box<dyn StepModel + '_>;
}
