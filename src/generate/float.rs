//! The floating-point element types sidx reads and writes in a graph.

use ort::value::TensorElementType;

/// The floating-point type of a graph's caches or logits: whatever the
/// export chose; scores are accumulated in f32 either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Float {
    F32,
    F16,
    BF16,
}

impl Float {
    pub(super) fn of(ty: TensorElementType) -> Option<Self> {
        match ty {
            TensorElementType::Float32 => Some(Float::F32),
            TensorElementType::Float16 => Some(Float::F16),
            TensorElementType::Bfloat16 => Some(Float::BF16),
            _ => None,
        }
    }
}
