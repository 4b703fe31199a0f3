//! The part of a logits row the search reads: the log-softmax over the whole
//! vocabulary (accumulated in f32, whatever the graph's type) at the SID
//! token columns and end-of-SID — on the host here, on the device in
//! [`super::resident`]'s score head.

use ort::value::DynValue;

use super::float::Float;
use super::lse::log_sum_exp;
use super::sidecar::Sidecar;

/// The part of a logits row the search reads ([`StepModel`]'s row): the SID
/// tokens, then end-of-SID — normalized over the whole row.
#[derive(Clone, Copy, Debug)]
pub(super) struct ScoreSlice<'s> {
    vocab: usize,
    sid: SidColumns<'s>,
    eos: usize,
}

/// Where the SID tokens sit in a logits row.
#[derive(Clone, Copy, Debug)]
enum SidColumns<'s> {
    Range { offset: usize, tokens: usize },
    Listed(&'s [u32]),
}

impl<'s> ScoreSlice<'s> {
    pub(super) fn of(s: &'s Sidecar) -> Self {
        let sid = match &s.sid_token_ids {
            Some(ids) => SidColumns::Listed(ids),
            None => SidColumns::Range {
                offset: s.sid_token_offset.unwrap_or(0) as usize,
                tokens: s.sid_token_limit as usize,
            },
        };
        ScoreSlice {
            vocab: s.vocab_size as usize,
            sid,
            eos: s.end_of_sid_id as usize,
        }
    }

    /// The logits columns of a score row, in order: the SID tokens, then
    /// end-of-SID.
    pub(super) fn columns(&self) -> Vec<i64> {
        let sid: Vec<i64> = match self.sid {
            SidColumns::Range { offset, tokens } => {
                (offset..offset + tokens).map(|c| c as i64).collect()
            }
            SidColumns::Listed(ids) => ids.iter().map(|&c| i64::from(c)).collect(),
        };
        sid.into_iter().chain([self.eos as i64]).collect()
    }

    pub(super) fn vocab(&self) -> usize {
        self.vocab
    }

    pub(super) fn width(&self) -> usize {
        match self.sid {
            SidColumns::Range { tokens, .. } => tokens + 1,
            SidColumns::Listed(ids) => ids.len() + 1,
        }
    }
}

/// Writes each row's last-position scores as [`StepModel`] rows: the
/// log-softmax over the whole vocabulary (in f32, whatever the graph's type)
/// read once, only the SID slice and end-of-SID written.
pub(super) fn last_log_probs(
    logits: &DynValue,
    ty: Float,
    rank: usize,
    rows: usize,
    slice: ScoreSlice<'_>,
    out: &mut Vec<f32>,
) -> Result<(), ort::Error> {
    out.clear();
    out.reserve(rows * slice.width());
    match ty {
        Float::F32 => {
            let (shape, l) = logits.try_extract_tensor::<f32>()?;
            each_last_row(shape, rank, rows, slice, |r| {
                slice_log_softmax(&l[r], slice, out, |&x| x)
            })
        }
        Float::F16 => {
            let (shape, l) = logits.try_extract_tensor::<half::f16>()?;
            each_last_row(shape, rank, rows, slice, |r| {
                slice_log_softmax(&l[r], slice, out, |x| x.to_f32())
            })
        }
        Float::BF16 => {
            let (shape, l) = logits.try_extract_tensor::<half::bf16>()?;
            each_last_row(shape, rank, rows, slice, |r| {
                slice_log_softmax(&l[r], slice, out, |x| x.to_f32())
            })
        }
    }
}

/// Calls `f` with the range of each row's last-position logits, after
/// checking the logits have `rows` rows of the sidecar's vocabulary.
fn each_last_row(
    shape: &ort::value::Shape,
    rank: usize,
    rows: usize,
    slice: ScoreSlice<'_>,
    mut f: impl FnMut(std::ops::Range<usize>),
) -> Result<(), ort::Error> {
    let vocab = *shape.last().unwrap_or(&0) as usize;
    let positions = if rank == 3 {
        shape.get(1).copied().unwrap_or(0) as usize
    } else {
        1
    };
    if vocab != slice.vocab
        || shape.first().copied().unwrap_or(0) as usize != rows
        || positions == 0
    {
        return Err(ort::Error::new(format!(
            "logits of shape {shape:?} for {rows} rows, expected rows of vocab_size {}",
            slice.vocab
        )));
    }
    for i in 0..rows {
        let last = (i * positions + positions - 1) * vocab;
        f(last..last + vocab);
    }
    Ok(())
}

/// Appends the SID slice and end-of-SID of `log_softmax(logits)`, accumulated in f32.
fn slice_log_softmax<T>(
    logits: &[T],
    s: ScoreSlice<'_>,
    out: &mut Vec<f32>,
    f32_of: impl Fn(&T) -> f32,
) {
    let lse = log_sum_exp(logits, &f32_of);
    match s.sid {
        SidColumns::Range { offset, tokens } => out.extend(
            logits[offset..offset + tokens]
                .iter()
                .map(|l| f32_of(l) - lse),
        ),
        SidColumns::Listed(ids) => {
            out.extend(ids.iter().map(|&i| f32_of(&logits[i as usize]) - lse))
        }
    }
    out.push(f32_of(&logits[s.eos]) - lse);
}
