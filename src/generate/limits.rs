//! The generator's limits: request defaults and bounds (checked by
//! [`super::validate`]) and the queue and batch sizes of [`super::engine`].

/// Defaults and bounds of requests, and the queue.
#[derive(Clone, Debug)]
pub struct GeneratorLimits {
    pub default_beam: usize,
    pub max_beam: usize,
    pub default_top_k: usize,
    pub max_history: usize,
    /// Longest unconstrained SID.
    pub max_sid_len: usize,
    /// Requests waiting for the model beyond which new ones are refused.
    pub queue: usize,
    /// Requests run together in one batch at most.
    pub max_batch: usize,
}

impl Default for GeneratorLimits {
    fn default() -> Self {
        GeneratorLimits {
            default_beam: 20,
            max_beam: 512,
            default_top_k: 10,
            max_history: 1000,
            max_sid_len: 8,
            queue: 256,
            max_batch: 16,
        }
    }
}
