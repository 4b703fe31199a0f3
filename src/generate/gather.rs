//! Host tensors of cache rows: the rows a step needs taken out of the last
//! step's outputs — by beam parent (self-attention) or by request
//! (cross-attention, encoder states) — and zeros for an empty first past.
//!
//! A step's gathered cache is megabytes; allocated fresh each step, its
//! pages fault in again every time (a 1.3 MB gather measured 600 µs, 55 µs
//! into memory already mapped). So the per-step gathers write into buffers
//! that a [`GatherPool`] keeps across steps and batches.

use ort::session::SessionInputValue;
use ort::value::{DynValue, PrimitiveTensorElementType, Tensor, TensorRef};

use super::float::Float;

/// The rows `rows` (in that order) of `value`, whose first dimension is the
/// row: the tensor `shape` (its first entry the number of rows taken).
pub(super) fn gather<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    value: &DynValue,
    rows: impl Iterator<Item = usize>,
    shape: Vec<usize>,
) -> Result<DynValue, ort::Error> {
    let per_row: usize = shape[1..].iter().product();
    let (_, data) = value.try_extract_tensor::<T>()?;
    let mut gathered = Vec::with_capacity(shape[0] * per_row);
    for p in rows {
        gathered.extend_from_slice(&data[p * per_row..(p + 1) * per_row]);
    }
    Ok(Tensor::from_array((shape, gathered))?.into_dyn())
}

/// [`gather`] for a tensor of element type `ty`.
pub(super) fn gather_float(
    ty: Float,
    value: &DynValue,
    rows: impl Iterator<Item = usize>,
    shape: Vec<usize>,
) -> Result<DynValue, ort::Error> {
    match ty {
        Float::F32 => gather::<f32>(value, rows, shape),
        Float::F16 => gather::<half::f16>(value, rows, shape),
        Float::BF16 => gather::<half::bf16>(value, rows, shape),
    }
}

/// A tensor of zeros of element type `ty` (empty when a dimension is 0: the
/// first call's past).
pub(super) fn zeros(ty: Float, shape: Vec<usize>) -> Result<DynValue, ort::Error> {
    let n = shape.iter().product();
    Ok(match ty {
        Float::F32 => Tensor::from_array((shape, vec![0f32; n]))?.into_dyn(),
        Float::F16 => Tensor::from_array((shape, vec![half::f16::ZERO; n]))?.into_dyn(),
        Float::BF16 => Tensor::from_array((shape, vec![half::bf16::ZERO; n]))?.into_dyn(),
    })
}

/// Buffers reused by the per-step gathers, one per cache tensor; each holds
/// the largest gather it has seen.
#[derive(Default)]
pub(super) struct GatherPool(Vec<FloatBuf>);

/// A host buffer of one element type.
pub(super) enum FloatBuf {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
}

impl GatherPool {
    /// Buffer `k`, of element type `ty` (replaced if it had another).
    pub(super) fn buf(&mut self, k: usize, ty: Float) -> &mut FloatBuf {
        while self.0.len() <= k {
            self.0.push(FloatBuf::new(ty));
        }
        if self.0[k].ty() != ty {
            self.0[k] = FloatBuf::new(ty);
        }
        &mut self.0[k]
    }

    /// Buffer `k` as an input tensor of `shape` (as last filled).
    pub(super) fn view(
        &self,
        k: usize,
        shape: Vec<usize>,
    ) -> Result<SessionInputValue<'_>, ort::Error> {
        let buf = self
            .0
            .get(k)
            .ok_or_else(|| ort::Error::new(format!("gather buffer {k} was never filled")))?;
        Ok(match buf {
            FloatBuf::F32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
            FloatBuf::F16(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
            FloatBuf::BF16(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        })
    }
}

impl FloatBuf {
    fn new(ty: Float) -> Self {
        match ty {
            Float::F32 => FloatBuf::F32(Vec::new()),
            Float::F16 => FloatBuf::F16(Vec::new()),
            Float::BF16 => FloatBuf::BF16(Vec::new()),
        }
    }

    fn ty(&self) -> Float {
        match self {
            FloatBuf::F32(_) => Float::F32,
            FloatBuf::F16(_) => Float::F16,
            FloatBuf::BF16(_) => Float::BF16,
        }
    }

    /// Refills the buffer with rows `rows` (in that order) of `value`, whose
    /// first dimension is the row, `per_row` elements each.
    pub(super) fn gather(
        &mut self,
        value: &DynValue,
        rows: impl ExactSizeIterator<Item = usize>,
        per_row: usize,
    ) -> Result<(), ort::Error> {
        match self {
            FloatBuf::F32(v) => gather_into(v, value, rows, per_row),
            FloatBuf::F16(v) => gather_into(v, value, rows, per_row),
            FloatBuf::BF16(v) => gather_into(v, value, rows, per_row),
        }
    }
}

fn gather_into<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    buf: &mut Vec<T>,
    value: &DynValue,
    rows: impl ExactSizeIterator<Item = usize>,
    per_row: usize,
) -> Result<(), ort::Error> {
    let (_, data) = value.try_extract_tensor::<T>()?;
    buf.clear();
    buf.reserve(rows.len() * per_row);
    for p in rows {
        let row = data.get(p * per_row..(p + 1) * per_row).ok_or_else(|| {
            ort::Error::new(format!("cache row {p} is beyond the last step's output"))
        })?;
        buf.extend_from_slice(row);
    }
    Ok(())
}
