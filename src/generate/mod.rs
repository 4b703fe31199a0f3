//! Generation of SIDs: beam search constrained by the index, behind a model
//! trait so it is tested without a model runtime. (The ONNX Runtime model and
//! the generator service build on this.)

mod beam;

pub use beam::{BeamConfig, BeamResult, Generated, StepModel, beam_search};
