//! An ONNX decoder behind [`StepModel`]: the model contract (Hugging Face /
//! optimum names) detected from the graph, prompts left-padded into one batch,
//! and — for exports with a KV cache — the cache gathered by beam parent at
//! every step, so each step feeds one token per hypothesis.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::GenerateError;
use super::beam::{ModelError, Row, StepModel};
use super::model::BatchModel;
use super::runtime::{Device, RuntimeOptions, open_session};
use super::sidecar::Sidecar;

/// What the graph takes and returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contract {
    pub position_ids: bool,
    /// Decoder layers with a KV cache (0 = an export without one).
    pub cache_layers: usize,
    /// Attention heads and head size of the cache (`[batch, heads, seq, head_dim]`).
    pub heads: usize,
    pub head_dim: usize,
    /// Logits are `[batch, seq, vocab]` (3) or `[batch, vocab]` (2).
    pub logits_rank: usize,
    /// Vocabulary size when the graph fixes it.
    pub vocab: Option<usize>,
}

fn tensor(v: &ValueType) -> Option<(TensorElementType, &[i64])> {
    match v {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape)),
        _ => None,
    }
}

impl Contract {
    /// Reads the contract from a session's inputs and outputs.
    pub fn detect(session: &Session) -> Result<Self, String> {
        let mut input_ids = false;
        let mut attention_mask = false;
        let mut position_ids = false;
        let mut past: Vec<(usize, bool, i64, i64)> = Vec::new();
        for input in session.inputs() {
            let name = input.name();
            let (ty, shape) =
                tensor(input.dtype()).ok_or_else(|| format!("input {name} is not a tensor"))?;
            let want_int = |flag: &mut bool| {
                if ty != TensorElementType::Int64 || shape.len() != 2 {
                    return Err(format!(
                        "input {name} must be int64 [batch, seq], is {ty:?} of rank {}",
                        shape.len()
                    ));
                }
                *flag = true;
                Ok(())
            };
            match name {
                "input_ids" => want_int(&mut input_ids)?,
                "attention_mask" => want_int(&mut attention_mask)?,
                "position_ids" => want_int(&mut position_ids)?,
                _ => {
                    let (layer, is_value) = parse_cache_name(name, "past_key_values.")
                        .ok_or_else(|| format!("input {name} is not part of the decoder contract (input_ids, attention_mask, position_ids, past_key_values.N.key|value)"))?;
                    if ty != TensorElementType::Float32 || shape.len() != 4 {
                        return Err(format!(
                            "input {name} must be float32 [batch, heads, past, head_dim]"
                        ));
                    }
                    past.push((layer, is_value, shape[1], shape[3]));
                }
            }
        }
        for (flag, name) in [(input_ids, "input_ids"), (attention_mask, "attention_mask")] {
            if !flag {
                return Err(format!("the model has no {name} input"));
            }
        }
        let cache_layers = past.len() / 2;
        for layer in 0..cache_layers {
            for is_value in [false, true] {
                if !past.iter().any(|p| p.0 == layer && p.1 == is_value) {
                    return Err(format!(
                        "past_key_values.{layer}.{} is missing ({} cache inputs)",
                        if is_value { "value" } else { "key" },
                        past.len()
                    ));
                }
            }
        }
        if past.len() % 2 == 1 {
            return Err("past_key_values inputs come in key/value pairs".into());
        }
        let (heads, head_dim) =
            match past.first() {
                Some(&(_, _, h, d)) if h > 0 && d > 0 => {
                    if past.iter().any(|p| p.2 != h || p.3 != d) {
                        return Err("past_key_values inputs disagree on heads or head size".into());
                    }
                    (h as usize, d as usize)
                }
                Some(_) => return Err(
                    "past_key_values inputs need fixed heads and head size (dimensions 1 and 3)"
                        .into(),
                ),
                None => (0, 0),
            };
        let mut logits = None;
        let mut present = 0;
        for output in session.outputs() {
            let name = output.name();
            if name == "logits" {
                let (ty, shape) = tensor(output.dtype()).ok_or("output logits is not a tensor")?;
                if ty != TensorElementType::Float32 || !(2..=3).contains(&shape.len()) {
                    return Err(format!(
                        "output logits must be float32 [batch, seq, vocab] or [batch, vocab], is {ty:?} of rank {}",
                        shape.len()
                    ));
                }
                let v = shape[shape.len() - 1];
                logits = Some((shape.len(), (v > 0).then_some(v as usize)));
            } else if let Some((layer, _)) = parse_cache_name(name, "present.") {
                if layer >= cache_layers {
                    return Err(format!(
                        "output {name} has no matching past_key_values input"
                    ));
                }
                present += 1;
            }
        }
        let (logits_rank, vocab) = logits.ok_or("the model has no logits output")?;
        if present != 2 * cache_layers {
            return Err(format!(
                "{} past_key_values inputs but {present} present outputs",
                2 * cache_layers
            ));
        }
        Ok(Contract {
            position_ids,
            cache_layers,
            heads,
            head_dim,
            logits_rank,
            vocab,
        })
    }
}

/// `prefix` + `N.key` / `N.value` → (N, is_value).
fn parse_cache_name(name: &str, prefix: &str) -> Option<(usize, bool)> {
    let rest = name.strip_prefix(prefix)?;
    let (layer, kind) = rest.split_once('.')?;
    let is_value = match kind {
        "key" => false,
        "value" => true,
        _ => return None,
    };
    Some((layer.parse().ok()?, is_value))
}

/// A loaded generator: session, contract and sidecar.
pub struct OnnxModel {
    session: Session,
    contract: Contract,
    sidecar: Sidecar,
    device: Device,
    path: PathBuf,
}

impl OnnxModel {
    /// Opens `model` with its sidecar (`generator.json` beside it unless given).
    pub fn open(
        model: &Path,
        sidecar: Option<&Path>,
        opts: &RuntimeOptions,
    ) -> Result<Self, GenerateError> {
        let sidecar_path = sidecar
            .map(Path::to_path_buf)
            .unwrap_or_else(|| Sidecar::path_for(model));
        let sidecar = Sidecar::load(&sidecar_path)?;
        let (session, device) = open_session(model, opts)?;
        let contract = Contract::detect(&session).map_err(|problem| GenerateError::Model {
            path: model.to_path_buf(),
            problem,
        })?;
        if let Some(v) = contract.vocab
            && v != sidecar.vocab_size as usize
        {
            return Err(GenerateError::Sidecar {
                path: sidecar_path,
                problem: format!(
                    "vocab_size {} but the model's logits have {v} columns",
                    sidecar.vocab_size
                ),
            });
        }
        tracing::info!(
            model = %model.display(),
            %device,
            kv_cache_layers = contract.cache_layers,
            position_ids = contract.position_ids,
            "generator model loaded"
        );
        Ok(OnnxModel {
            session,
            contract,
            sidecar,
            device,
            path: model.to_path_buf(),
        })
    }

    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    pub fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }

    /// The provider that really runs the model.
    pub fn device(&self) -> Device {
        self.device
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A search over these prompts (one per request, vocabulary ids).
    pub fn batch(&mut self, prompts: Vec<Vec<i64>>) -> OnnxBatch<'_> {
        OnnxBatch {
            model: self,
            prompts,
            cache: Vec::new(),
            pads: Vec::new(),
            width: 0,
        }
    }
}

impl BatchModel for OnnxModel {
    fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }
    fn device(&self) -> Device {
        self.device
    }
    fn source(&self) -> &Path {
        &self.path
    }
    fn batch(&mut self, prompts: Vec<Vec<i64>>) -> Box<dyn StepModel + '_> {
        Box::new(OnnxModel::batch(self, prompts))
    }
}

/// One batch of requests being searched; implements [`StepModel`].
pub struct OnnxBatch<'m> {
    model: &'m mut OnnxModel,
    prompts: Vec<Vec<i64>>,
    /// The last call's `present.*` outputs, as ONNX Runtime returned them
    /// (layer-major, key then value): `[rows, heads, width, head_dim]`.
    cache: Vec<DynValue>,
    /// Per request: the left padding of its prompt in the first call.
    pads: Vec<usize>,
    /// Sequence length the cache holds.
    width: usize,
}

/// `past_key_values.N.key|value` / `present.N.key|value` for cache tensor `k`
/// (layer-major, key then value).
fn cache_name(prefix: &str, k: usize) -> String {
    let kind = if k.is_multiple_of(2) { "key" } else { "value" };
    format!("{prefix}{}.{kind}", k / 2)
}

impl OnnxBatch<'_> {
    /// Left-pads full sequences (prompt + SID so far) into one batch.
    fn full_sequences(&self, rows: &[Row<'_>]) -> (Vec<i64>, Vec<i64>, Vec<i64>, usize) {
        let s = &self.model.sidecar;
        let lens: Vec<usize> = rows
            .iter()
            .map(|r| self.prompts[r.request].len() + r.sid.len())
            .collect();
        let width = lens.iter().copied().max().unwrap_or(1).max(1);
        let n = rows.len();
        let (mut ids, mut mask, mut pos) = (
            vec![i64::from(s.pad_id); n * width],
            vec![0i64; n * width],
            vec![0i64; n * width],
        );
        for (i, (row, &len)) in rows.iter().zip(&lens).enumerate() {
            let pad = width - len;
            let tokens = self.prompts[row.request]
                .iter()
                .copied()
                .chain(row.sid.iter().map(|&t| s.vocab_id(t)));
            for (j, t) in tokens.enumerate() {
                ids[i * width + pad + j] = t;
                mask[i * width + pad + j] = 1;
                pos[i * width + pad + j] = j as i64;
            }
        }
        (ids, mask, pos, width)
    }

    /// One new token per row: its id, the attention mask over the cache plus
    /// the token (the request's padding, then ones) and its position.
    fn next_tokens(&self, rows: &[Row<'_>], total: usize) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
        let s = &self.model.sidecar;
        let mut ids = Vec::with_capacity(rows.len());
        let mut mask = Vec::with_capacity(rows.len() * total);
        let mut pos = Vec::with_capacity(rows.len());
        for r in rows {
            let last = *r
                .sid
                .last()
                .expect("a row after the first call has a token");
            ids.push(s.vocab_id(last));
            let pad = self.pads[r.request];
            mask.extend((0..total).map(|j| i64::from(j >= pad)));
            pos.push((self.prompts[r.request].len() + r.sid.len() - 1) as i64);
        }
        (ids, mask, pos)
    }

    /// The cache rows of each row's parent, for `past_key_values` input `k`.
    fn gathered_cache(&self, k: usize, rows: &[Row<'_>]) -> Result<Vec<f32>, ort::Error> {
        let c = &self.model.contract;
        let per_row = c.heads * self.width * c.head_dim;
        let (_, present) = self.cache[k].try_extract_tensor::<f32>()?;
        let mut gathered = Vec::with_capacity(rows.len() * per_row);
        for r in rows {
            let p = r
                .parent
                .expect("every row after the first call has a parent");
            gathered.extend_from_slice(&present[p * per_row..(p + 1) * per_row]);
        }
        Ok(gathered)
    }

    fn run(&mut self, rows: &[Row<'_>], out: &mut Vec<f32>) -> Result<(), ort::Error> {
        let c = self.model.contract.clone();
        let n = rows.len();
        let first = rows.iter().all(|r| r.parent.is_none());
        let step_with_cache = c.cache_layers > 0 && !first;
        let (ids, mask, pos, seq, total) = if step_with_cache {
            let total = self.width + 1;
            let (ids, mask, pos) = self.next_tokens(rows, total);
            (ids, mask, pos, 1, total)
        } else {
            let (ids, mask, pos, width) = self.full_sequences(rows);
            if c.cache_layers > 0 {
                self.width = 0;
                self.pads = vec![0; self.prompts.len()];
                for r in rows {
                    self.pads[r.request] = width - self.prompts[r.request].len() - r.sid.len();
                }
            }
            (ids, mask, pos, width, width)
        };
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
            (
                "input_ids".into(),
                Tensor::from_array(([n, seq], ids))?.into(),
            ),
            (
                "attention_mask".into(),
                Tensor::from_array(([n, total], mask))?.into(),
            ),
        ];
        if c.position_ids {
            inputs.push((
                "position_ids".into(),
                Tensor::from_array(([n, seq], pos))?.into(),
            ));
        }
        for k in 0..2 * c.cache_layers {
            // The first call's cache is empty (width 0).
            let past = if step_with_cache {
                self.gathered_cache(k, rows)?
            } else {
                Vec::new()
            };
            let shape = [n, c.heads, self.width, c.head_dim];
            inputs.push((
                cache_name("past_key_values.", k),
                Tensor::from_array((shape, past))?.into(),
            ));
        }
        self.cache.clear();
        let mut outputs = self.model.session.run(inputs)?;
        let (shape, logits) = outputs["logits"].try_extract_tensor::<f32>()?;
        let vocab = *shape.last().unwrap_or(&0) as usize;
        let stride_rows = if c.logits_rank == 3 {
            shape[1] as usize
        } else {
            1
        };
        out.clear();
        out.reserve(n * vocab);
        for i in 0..n {
            let last = (i * stride_rows + stride_rows - 1) * vocab;
            log_softmax_into(&logits[last..last + vocab], out);
        }
        if c.cache_layers > 0 {
            // Kept as ONNX Runtime returned them: the next step copies only
            // the parents' rows out of them.
            for k in 0..2 * c.cache_layers {
                let name = cache_name("present.", k);
                let present = outputs
                    .remove(&name)
                    .ok_or_else(|| ort::Error::new(format!("the model returned no {name}")))?;
                self.cache.push(present);
            }
            self.width = total;
        }
        Ok(())
    }
}

/// Appends `log_softmax(logits)`.
fn log_softmax_into(logits: &[f32], out: &mut Vec<f32>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let lse = max + sum.ln();
    out.extend(logits.iter().map(|&l| l - lse));
}

impl StepModel for OnnxBatch<'_> {
    fn vocab(&self) -> usize {
        self.model.sidecar.vocab_size as usize
    }

    fn eos(&self) -> usize {
        self.model.sidecar.end_of_sid_id as usize
    }

    fn sid_offset(&self) -> usize {
        self.model.sidecar.sid_token_offset as usize
    }

    fn sid_tokens(&self) -> usize {
        self.model.sidecar.sid_token_limit as usize
    }

    fn log_probs(&mut self, rows: &[Row<'_>], out: &mut Vec<f32>) -> Result<(), ModelError> {
        self.run(rows, out)?;
        let want = rows.len() * self.vocab();
        if out.len() != want {
            return Err(format!(
                "{}: logits have {} values for {} rows, expected {want} (vocab_size {})",
                self.model.path.display(),
                out.len(),
                rows.len(),
                self.vocab()
            )
            .into());
        }
        Ok(())
    }
}
