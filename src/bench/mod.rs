//! The benchmarks behind `sidx bench …`: each prints a table with its peers
//! measured in the same run. Fixtures shared with the Criterion benches are
//! in [`fixtures`], helpers in [`util`]; nothing here is part of the library.

pub mod fixtures;
pub mod generate;
pub mod grpc;
pub mod index;
pub mod quantize;
pub mod util;
