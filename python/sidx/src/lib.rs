//! `sidx._sidx`: the Python face of the sidx library — the memory-mapped
//! SID index and its batched constraint for beam search, the quantizer, the
//! hourglass report. Thin wrappers: every answer comes from the same crate
//! the services run. Errors of the library are raised as `sidx.SidxError`
//! with its text; bad arguments as `ValueError`.

mod index;
mod quantizer;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

create_exception!(
    _sidx,
    SidxError,
    PyException,
    "An error of the sidx library (bad files, corrupt indexes, bad input), with its message."
);

/// A library error as a Python exception.
pub(crate) fn sidx_err(e: impl std::fmt::Display) -> PyErr {
    SidxError::new_err(e.to_string())
}

pub(crate) fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

#[pymodule]
fn _sidx(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SidxError", m.py().get_type::<SidxError>())?;
    m.add_class::<index::Index>()?;
    m.add_class::<index::Vocab>()?;
    m.add_class::<quantizer::Quantizer>()?;
    m.add_function(wrap_pyfunction!(quantizer::hourglass_json, m)?)?;
    Ok(())
}
