//! `Quantizer` (stored codebooks: encode embeddings into codes) and the
//! hourglass report of a code matrix.

use std::path::PathBuf;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use sidx::hourglass::HourglassReport;
use sidx::progress::Progress;
use sidx::quantize::{CODEBOOKS_FILE, QuantizerMeta, ResidualQuantizer};
use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable};

use crate::{sidx_err, value_err};

/// Residual-quantizer codebooks written by `sidx quantize`.
#[pyclass(frozen, module = "sidx")]
pub struct Quantizer {
    rq: ResidualQuantizer,
    beam: usize,
    method: String,
}

#[pymethods]
impl Quantizer {
    /// Loads `DIR/codebooks.npy` (or a codebooks file) and the beam width
    /// `quantizer.json` beside it records.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        let file = if path.is_dir() {
            path.join(CODEBOOKS_FILE)
        } else {
            path
        };
        let rq = ResidualQuantizer::load(&file).map_err(sidx_err)?;
        let meta = QuantizerMeta::beside(&file);
        Ok(Self {
            rq,
            beam: meta.as_ref().map_or(1, |m| m.beam.max(1)),
            method: meta.map_or_else(|| "rq-kmeans".into(), |m| m.method.name().into()),
        })
    }

    #[getter]
    fn dim(&self) -> usize {
        self.rq.dim()
    }

    #[getter]
    fn layers(&self) -> usize {
        self.rq.layers()
    }

    #[getter]
    fn codebook_sizes(&self) -> Vec<u32> {
        self.rq.codebook_sizes()
    }

    /// The beam width encoding uses by default (quantizer.json's).
    #[getter]
    fn beam(&self) -> usize {
        self.beam
    }

    #[getter]
    fn method(&self) -> &str {
        &self.method
    }

    /// Codes `[N, layers]` (int32) of embeddings `x` (`[N, dim]` float32;
    /// a C-contiguous array is read in place, not copied). The GIL is released while
    /// encoding, on all cores. Every item takes its nearest code: an
    /// rq-balanced catalog's balance is a property of the whole catalog.
    #[pyo3(signature = (x, beam=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        beam: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<i32>>> {
        let x: PyReadonlyArray2<'py, f32> = x.extract().map_err(|_| {
            let what = match (x.getattr("dtype"), x.getattr("shape")) {
                (Ok(dtype), Ok(shape)) => format!("an array of {dtype} with shape {shape}"),
                _ => format!(
                    "a {}",
                    x.get_type().name().map_or("?".into(), |n| n.to_string())
                ),
            };
            PyTypeError::new_err(format!(
                "x must be a 2-d numpy float32 array [N, {}], got {what} \
                 (np.asarray(x, dtype=np.float32))",
                self.rq.dim()
            ))
        })?;
        let (n, d) = x.as_array().dim();
        if d != self.rq.dim() {
            return Err(value_err(format!(
                "x has {d} columns, the codebooks have dimension {}",
                self.rq.dim()
            )));
        }
        // A strided view (a slice, Fortran order) is copied once into rows.
        let copied: Vec<f32>;
        // (`as_slice` also takes Fortran order, whose rows are not contiguous.)
        let values = match x.as_slice() {
            Ok(v) if x.is_c_contiguous() => v,
            _ => {
                copied = x.as_array().iter().copied().collect();
                &copied
            }
        };
        sidx::quantize::check_finite(values, d).map_err(value_err)?;
        let beam = beam.unwrap_or(self.beam).max(1);
        let codes = py.detach(|| self.rq.encode(values, beam, &Progress::hidden()).codes);
        let codes: Vec<i32> = codes.into_iter().map(|c| c as i32).collect();
        let layers = self.rq.layers();
        let array = Array2::from_shape_vec((n, layers), codes).expect("n × layers codes");
        Ok(array.into_pyarray(py))
    }

    /// Reconstructions `[N, dim]` of codes `[N, layers]`.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        codes: PyReadonlyArray2<'py, i64>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let codes = codes.as_array();
        let (n, layers) = codes.dim();
        if layers != self.rq.layers() {
            return Err(value_err(format!(
                "codes have {layers} columns, the quantizer has {} layers",
                self.rq.layers()
            )));
        }
        let sizes = self.codebook_sizes();
        let mut flat = Vec::with_capacity(n * layers);
        for (i, row) in codes.rows().into_iter().enumerate() {
            for (l, &c) in row.iter().enumerate() {
                if c < 0 || c >= i64::from(sizes[l]) {
                    return Err(value_err(format!(
                        "row {i}: code {c} of layer {} is outside its codebook of {}",
                        l + 1,
                        sizes[l]
                    )));
                }
                flat.push(c as u32);
            }
        }
        let x = self.rq.decode(&flat);
        let array = Array2::from_shape_vec((n, self.rq.dim()), x).expect("n × dim values");
        Ok(array.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!(
            "Quantizer({}, dim={}, codebook_sizes={:?}, beam={})",
            self.method,
            self.rq.dim(),
            self.codebook_sizes(),
            self.beam
        )
    }
}

/// The hourglass report (JSON) of codes `[N, L]` under `codebook_sizes`.
#[pyfunction]
#[pyo3(signature = (codes, codebook_sizes, head_share=sidx::hourglass::DEFAULT_HEAD_SHARE))]
pub fn hourglass_json(
    codes: PyReadonlyArray2<'_, i64>,
    codebook_sizes: Vec<u32>,
    head_share: f64,
) -> PyResult<String> {
    let layout = Layout::new(codebook_sizes).map_err(|e| value_err(e.to_string()))?;
    let codes = codes.as_array();
    let (n, l) = codes.dim();
    if l != layout.layers() {
        return Err(value_err(format!(
            "codes have {l} columns, the layout {} layers",
            layout.layers()
        )));
    }
    if !(0.0..=1.0).contains(&head_share) {
        return Err(value_err(format!(
            "head_share {head_share} is not in [0, 1]"
        )));
    }
    let mut flat = Vec::with_capacity(n * l);
    for (i, row) in codes.rows().into_iter().enumerate() {
        for (j, &c) in row.iter().enumerate() {
            let m = layout.codebook_sizes()[j];
            if c < 0 || c >= i64::from(m) {
                return Err(value_err(format!(
                    "row {i}: code {c} of layer {} is outside its codebook of {m}",
                    j + 1
                )));
            }
            flat.push(c as u32);
        }
    }
    let header = SidHeader::new(&layout, CollisionMode::Share);
    let ids = (0..n).map(|i| i.to_string()).collect();
    let table = SidTable::from_codes(header, ids, &flat);
    let report = HourglassReport::measure(&table, head_share);
    serde_json::to_string(&report).map_err(sidx_err)
}
