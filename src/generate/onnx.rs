//! An ONNX decoder behind [`StepModel`]: the model contract (Hugging Face /
//! optimum names) detected from the graph, prompts left-padded into one batch,
//! and — for exports with a KV cache — the cache gathered by beam parent at
//! every step, so each step feeds one token per hypothesis.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::GenerateError;
use super::beam::{ModelError, Row, StepModel};
use super::files::{DECODER_FILE, DECODER_WITH_PAST_FILE};
use super::float::Float;
use super::gather::{GatherPool, zeros};
use super::model::BatchModel;
use super::resident::Resident;
use super::runtime::{Device, RuntimeOptions, open_session};
use super::scores::{ScoreSlice, last_log_probs};
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
    /// Element type of the KV cache (F32 without one).
    pub cache_type: Float,
    pub logits_type: Float,
    /// A merged graph: its `use_cache_branch` input picks the first-step or
    /// the cached branch.
    pub merged: bool,
}

pub(super) fn tensor(v: &ValueType) -> Option<(TensorElementType, &[i64])> {
    match v {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape)),
        _ => None,
    }
}

/// What one graph declares, before any layout's rules are applied.
struct Declared {
    position_ids: bool,
    /// `past_key_values.N.key|value` inputs: (N, is value, heads, head size).
    past: Vec<(usize, bool, i64, i64)>,
    past_types: Vec<Float>,
    use_cache_branch: bool,
    /// `present.N.key|value` outputs: (N, is value, element type).
    present: Vec<(usize, bool, TensorElementType)>,
    /// Logits: rank, vocabulary (when fixed), element type.
    logits: (usize, Option<usize>, Float),
}

impl Declared {
    fn read(session: &Session) -> Result<Self, String> {
        let mut input_ids = false;
        let mut attention_mask = false;
        let mut position_ids = false;
        let mut use_cache_branch = false;
        let mut past = Vec::new();
        let mut past_types = Vec::new();
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
                "use_cache_branch" => {
                    if ty != TensorElementType::Bool {
                        return Err(format!("input use_cache_branch must be bool, is {ty:?}"));
                    }
                    use_cache_branch = true;
                }
                _ => {
                    let (layer, is_value) = parse_cache_name(name, "past_key_values.")
                        .ok_or_else(|| format!("input {name} is not part of the decoder contract (input_ids, attention_mask, position_ids, past_key_values.N.key|value, use_cache_branch)"))?;
                    let float = Float::of(ty).filter(|_| shape.len() == 4).ok_or_else(|| {
                        format!(
                            "input {name} must be float32, float16 or bfloat16 \
                             [batch, heads, past, head_dim], is {ty:?} of rank {}",
                            shape.len()
                        )
                    })?;
                    past_types.push(float);
                    past.push((layer, is_value, shape[1], shape[3]));
                }
            }
        }
        for (flag, name) in [(input_ids, "input_ids"), (attention_mask, "attention_mask")] {
            if !flag {
                return Err(format!("the model has no {name} input"));
            }
        }
        let mut logits = None;
        let mut present = Vec::new();
        for output in session.outputs() {
            let name = output.name();
            if name == "logits" {
                let (ty, shape) = tensor(output.dtype()).ok_or("output logits is not a tensor")?;
                let float = Float::of(ty)
                    .filter(|_| (2..=3).contains(&shape.len()))
                    .ok_or_else(|| {
                        format!(
                            "output logits must be float32, float16 or bfloat16 [batch, seq, vocab] \
                             or [batch, vocab], is {ty:?} of rank {}",
                            shape.len()
                        )
                    })?;
                let v = shape[shape.len() - 1];
                logits = Some((shape.len(), (v > 0).then_some(v as usize), float));
            } else if let Some((layer, is_value)) = parse_cache_name(name, "present.") {
                let ty = tensor(output.dtype()).map_or(TensorElementType::Float32, |t| t.0);
                present.push((layer, is_value, ty));
            }
        }
        Ok(Declared {
            position_ids,
            past,
            past_types,
            use_cache_branch,
            present,
            logits: logits.ok_or("the model has no logits output")?,
        })
    }
}

impl Contract {
    /// Reads the contract from a session's inputs and outputs: a graph that
    /// takes `past_key_values.*` (empty on the first call) or none, and, if
    /// merged, `use_cache_branch`.
    pub fn detect(session: &Session) -> Result<Self, String> {
        let d = Declared::read(session)?;
        let past = &d.past;
        if past.len() % 2 == 1 {
            return Err("past_key_values inputs come in key/value pairs".into());
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
        let cache_type = d.past_types.first().copied().unwrap_or(Float::F32);
        if d.past_types.iter().any(|&t| t != cache_type) {
            return Err("past_key_values inputs disagree on their element type".into());
        }
        if cache_layers == 0 && !d.present.is_empty() {
            return Err(format!(
                "{} present outputs but no past_key_values inputs: this is the first-step graph \
                 of a split export ({}); the folder holding it and {} is the model",
                d.present.len(),
                DECODER_FILE,
                DECODER_WITH_PAST_FILE
            ));
        }
        if let Some((layer, ..)) = d.present.iter().find(|p| p.0 >= cache_layers) {
            return Err(format!(
                "output present.{layer}.* has no matching past_key_values input"
            ));
        }
        if d.present.len() != 2 * cache_layers {
            return Err(format!(
                "{} past_key_values inputs but {} present outputs",
                2 * cache_layers,
                d.present.len()
            ));
        }
        if d.use_cache_branch && cache_layers == 0 {
            return Err("input use_cache_branch without past_key_values inputs".into());
        }
        let (logits_rank, vocab, logits_type) = d.logits;
        Ok(Contract {
            position_ids: d.position_ids,
            cache_layers,
            heads,
            head_dim,
            logits_rank,
            vocab,
            cache_type,
            logits_type,
            merged: d.use_cache_branch,
        })
    }

    /// Checks that `session` is the first-step graph of a split export whose
    /// later steps this contract describes: no past in, this contract's
    /// `present.*` out, the same other inputs and logits.
    fn check_first_step(&self, session: &Session) -> Result<(), String> {
        let d = Declared::read(session)?;
        if !d.past.is_empty() || d.use_cache_branch {
            return Err("the first-step graph must take no past_key_values and no \
                        use_cache_branch"
                .into());
        }
        for layer in 0..self.cache_layers {
            for is_value in [false, true] {
                match d.present.iter().find(|p| p.0 == layer && p.1 == is_value) {
                    None => {
                        return Err(format!(
                            "output {} is missing ({} layers are cached later)",
                            cache_name("present.", 2 * layer + usize::from(is_value)),
                            self.cache_layers
                        ));
                    }
                    Some(p) if Float::of(p.2) != Some(self.cache_type) => {
                        return Err(format!(
                            "output present.{layer}.* is {:?}, the cache is {:?}",
                            p.2, self.cache_type
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        if d.position_ids != self.position_ids {
            return Err(format!(
                "position_ids input: {} here, {} in {DECODER_WITH_PAST_FILE}",
                d.position_ids, self.position_ids
            ));
        }
        let (rank, vocab, ty) = d.logits;
        if (rank, ty) != (self.logits_rank, self.logits_type)
            || vocab.zip(self.vocab).is_some_and(|(a, b)| a != b)
        {
            return Err(format!(
                "logits {ty:?} of rank {rank} (vocab {vocab:?}), but {DECODER_WITH_PAST_FILE} \
                 returns {:?} of rank {} (vocab {:?})",
                self.logits_type, self.logits_rank, self.vocab
            ));
        }
        Ok(())
    }
}

/// `prefix` + `N.key` / `N.value` → (N, is_value).
pub(super) fn parse_cache_name(name: &str, prefix: &str) -> Option<(usize, bool)> {
    let rest = name.strip_prefix(prefix)?;
    let (layer, kind) = rest.split_once('.')?;
    let is_value = match kind {
        "key" => false,
        "value" => true,
        _ => return None,
    };
    Some((layer.parse().ok()?, is_value))
}

/// A loaded generator: session(s), contract and sidecar.
pub struct OnnxModel {
    /// The graph of every call — or, in a split export, of every call after
    /// the first.
    session: Session,
    /// A split export's first-step graph (`decoder_model.onnx`).
    first_step: Option<Session>,
    contract: Contract,
    sidecar: Sidecar,
    device: Device,
    path: PathBuf,
    /// Host buffers of the gathered cache, kept from step to step (host
    /// decoding).
    pool: GatherPool,
    /// The helper graphs of device-resident decoding (`None`: host decoding).
    resident: Option<Resident>,
}

impl OnnxModel {
    /// Opens the single graph `model` — with past (empty on the first call),
    /// merged (`use_cache_branch`) or without a cache — with its sidecar
    /// (`generator.json` beside it unless given).
    pub fn open(
        model: &Path,
        sidecar: Option<&Path>,
        opts: &RuntimeOptions,
    ) -> Result<Self, GenerateError> {
        Self::open_parts(model, None, Sidecar::path_or_default(sidecar, model), opts)
    }

    /// Opens a split export: `first_step` (no past in, present out) runs the
    /// first call, `with_past` every later one.
    pub fn open_split(
        first_step: &Path,
        with_past: &Path,
        sidecar: &Path,
        opts: &RuntimeOptions,
    ) -> Result<Self, GenerateError> {
        Self::open_parts(with_past, Some(first_step), sidecar.to_path_buf(), opts)
    }

    fn open_parts(
        model: &Path,
        first_step: Option<&Path>,
        sidecar_path: PathBuf,
        opts: &RuntimeOptions,
    ) -> Result<Self, GenerateError> {
        let problem = |path: &Path| {
            let path = path.to_path_buf();
            move |problem| GenerateError::Model { path, problem }
        };
        let (session, device) = open_session(model, opts)?;
        let contract = Contract::detect(&session).map_err(problem(model))?;
        let first_step = match first_step {
            Some(path) => {
                if contract.cache_layers == 0 || contract.merged {
                    return Err(problem(model)(
                        "a split export's later-step graph must take past_key_values (and no \
                         use_cache_branch)"
                            .into(),
                    ));
                }
                let (first, _) = open_session(path, opts)?;
                contract.check_first_step(&first).map_err(problem(path))?;
                Some(first)
            }
            None => None,
        };
        let sidecar = Sidecar::load_for(&sidecar_path, contract.vocab)?;
        let cache =
            (contract.cache_layers > 0).then_some((2 * contract.cache_layers, contract.cache_type));
        let resident = Resident::for_model(
            opts,
            device,
            cache,
            (contract.logits_type, contract.logits_rank),
            &sidecar,
        )
        .map_err(problem(model))?;
        let layout = match (&first_step, contract.merged) {
            (Some(_), _) => "split",
            (None, true) => "merged",
            (None, false) => "single",
        };
        tracing::info!(
            model = %model.display(),
            %device,
            layout,
            kv_cache_layers = contract.cache_layers,
            position_ids = contract.position_ids,
            cache_type = ?contract.cache_type,
            logits_type = ?contract.logits_type,
            cache_memory = %Resident::memory_of(resident.as_ref(), device),
            "generator model loaded"
        );
        if contract.cache_layers == 0 {
            tracing::warn!(
                model = %model.display(),
                "the export has no KV cache: every step feeds the whole sequence (several times \
                 slower); export with past, e.g. `optimum-cli export onnx --task text-generation-with-past`"
            );
        }
        if !contract.position_ids {
            tracing::warn!(
                model = %model.display(),
                "the export takes no position_ids: left padding would shift positions, so only \
                 requests with prompts of equal length are decoded together"
            );
        }
        Ok(OnnxModel {
            session,
            first_step,
            contract,
            sidecar,
            device,
            path: model.to_path_buf(),
            pool: GatherPool::default(),
            resident,
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
    ///
    /// Left padding is harmless only to a graph that takes `position_ids`;
    /// without them (absolute positions counted from the first token) each
    /// call runs requests of equal prompt length together, never padded.
    pub fn batch(&mut self, prompts: Vec<Vec<i64>>) -> OnnxBatch<'_> {
        let mut lengths: Vec<usize> = Vec::new();
        let group_of = prompts
            .iter()
            .map(|p| {
                if self.contract.position_ids {
                    return 0;
                }
                match lengths.iter().position(|&l| l == p.len()) {
                    Some(g) => g,
                    None => {
                        lengths.push(p.len());
                        lengths.len() - 1
                    }
                }
            })
            .collect::<Vec<_>>();
        let groups = group_of.iter().max().map_or(1, |g| g + 1);
        OnnxBatch {
            model: self,
            pads: vec![0; prompts.len()],
            prompts,
            group_of,
            states: (0..groups).map(|_| CacheState::default()).collect(),
            previous: Vec::new(),
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
    /// Per request: the left padding of its prompt in the first call.
    pads: Vec<usize>,
    /// Per request: the group of requests it runs with (one group unless
    /// padding would shift positions, see [`OnnxModel::batch`]).
    group_of: Vec<usize>,
    /// Per group: its KV cache.
    states: Vec<CacheState>,
    /// The last call's rows: (group, row within the group's call).
    previous: Vec<(usize, usize)>,
}

/// One group's cache between calls.
#[derive(Default)]
struct CacheState {
    /// The last call's `present.*` outputs, as ONNX Runtime returned them
    /// (layer-major, key then value): `[rows, heads, width, head_dim]`.
    cache: Vec<DynValue>,
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

    /// Scores `rows`, each group of requests in its own call; `out` in row order.
    fn run(&mut self, rows: &[Row<'_>], out: &mut Vec<f32>) -> Result<(), ort::Error> {
        if self.states.len() == 1 {
            self.run_group(0, rows, out)?;
            self.previous = (0..rows.len()).map(|i| (0, i)).collect();
            return Ok(());
        }
        let vocab = ScoreSlice::of(&self.model.sidecar).width();
        out.clear();
        out.resize(rows.len() * vocab, 0.0);
        let mut previous = vec![(0, 0); rows.len()];
        let mut scores = Vec::new();
        for g in 0..self.states.len() {
            let (at, local): (Vec<usize>, Vec<Row<'_>>) = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| self.group_of[r.request] == g)
                .map(|(i, r)| {
                    let parent = r.parent.map(|p| self.previous[p].1);
                    (i, Row { parent, ..*r })
                })
                .unzip();
            if local.is_empty() {
                continue;
            }
            self.run_group(g, &local, &mut scores)?;
            for (j, &i) in at.iter().enumerate() {
                out[i * vocab..(i + 1) * vocab]
                    .copy_from_slice(&scores[j * vocab..(j + 1) * vocab]);
                previous[i] = (g, j);
            }
        }
        self.previous = previous;
        Ok(())
    }

    fn run_group(
        &mut self,
        g: usize,
        rows: &[Row<'_>],
        out: &mut Vec<f32>,
    ) -> Result<(), ort::Error> {
        let c = self.model.contract.clone();
        let n = rows.len();
        let first = rows.iter().all(|r| r.parent.is_none());
        let step_with_cache = c.cache_layers > 0 && !first;
        let (ids, mask, pos, seq, total) = if step_with_cache {
            let total = self.states[g].width + 1;
            let (ids, mask, pos) = self.next_tokens(rows, total);
            (ids, mask, pos, 1, total)
        } else {
            let (ids, mask, pos, width) = self.full_sequences(rows);
            if c.cache_layers > 0 {
                self.states[g].width = 0;
                for r in rows {
                    self.pads[r.request] = width - self.prompts[r.request].len() - r.sid.len();
                }
            }
            (ids, mask, pos, width, width)
        };
        let mut fed: Vec<(String, DynValue)> = vec![
            (
                "input_ids".into(),
                Tensor::from_array(([n, seq], ids))?.into_dyn(),
            ),
            (
                "attention_mask".into(),
                Tensor::from_array(([n, total], mask))?.into_dyn(),
            ),
        ];
        if c.position_ids {
            fed.push((
                "position_ids".into(),
                Tensor::from_array(([n, seq], pos))?.into_dyn(),
            ));
        }
        // A split export's first call runs the graph that takes no past.
        let split_first = self.model.first_step.is_some() && !step_with_cache;
        if c.merged {
            fed.push((
                "use_cache_branch".into(),
                Tensor::from_array(([1usize], vec![step_with_cache]))?.into_dyn(),
            ));
        }
        let parents = || {
            rows.iter().map(|r| {
                r.parent
                    .expect("every row after the first call has a parent")
            })
        };
        let cache_tensors = if split_first { 0 } else { 2 * c.cache_layers };
        // The first call's cache is empty (width 0).
        let empty_past = || zeros(c.cache_type, vec![n, c.heads, 0, c.head_dim]);
        let session = match &mut self.model.first_step {
            Some(first) if split_first => first,
            _ => &mut self.model.session,
        };
        let present: Vec<String> = (0..2 * c.cache_layers)
            .map(|k| cache_name("present.", k))
            .collect();
        let state = &mut self.states[g];
        if let Some(resident) = &mut self.model.resident {
            let past = if !step_with_cache {
                (0..cache_tensors)
                    .map(|_| empty_past())
                    .collect::<Result<_, _>>()?
            } else {
                resident.gather(&state.cache, parents().map(|p| p as i64).collect())?
            };
            let mut inputs: Vec<(String, &DynValue)> =
                fed.iter().map(|(k, v)| (k.clone(), v)).collect();
            inputs.extend(
                past.iter()
                    .enumerate()
                    .map(|(k, v)| (cache_name("past_key_values.", k), v)),
            );
            let mut kept = vec!["logits".to_string()];
            kept.extend(present.iter().cloned());
            let mut outputs = resident.run(session, &inputs, &kept)?;
            let logits = outputs.remove(0);
            resident.scores(&logits, n, out)?;
            state.cache = outputs;
        } else {
            let per_row = c.heads * state.width * c.head_dim;
            if step_with_cache {
                for (k, cache) in state.cache.iter().enumerate() {
                    self.model
                        .pool
                        .buf(k, c.cache_type)
                        .gather(cache, parents(), per_row)?;
                }
            }
            let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> =
                fed.into_iter().map(|(k, v)| (k, v.into())).collect();
            for k in 0..cache_tensors {
                let past = if step_with_cache {
                    self.model
                        .pool
                        .view(k, vec![n, c.heads, state.width, c.head_dim])?
                } else {
                    empty_past()?.into()
                };
                inputs.push((cache_name("past_key_values.", k), past));
            }
            state.cache.clear();
            let mut outputs = session.run(inputs)?;
            let slice = ScoreSlice::of(&self.model.sidecar);
            last_log_probs(
                &outputs["logits"],
                c.logits_type,
                c.logits_rank,
                n,
                slice,
                out,
            )?;
            // Kept as ONNX Runtime returned them: the next step copies only
            // the parents' rows out of them.
            for name in &present {
                let value = outputs
                    .remove(name)
                    .ok_or_else(|| ort::Error::new(format!("the model returned no {name}")))?;
                state.cache.push(value);
            }
        }
        if c.cache_layers > 0 {
            state.width = total;
        }
        Ok(())
    }
}

impl StepModel for OnnxBatch<'_> {
    fn sid_tokens(&self) -> usize {
        self.model.sidecar.sid_token_limit as usize
    }

    fn log_probs(&mut self, rows: &[Row<'_>], out: &mut Vec<f32>) -> Result<(), ModelError> {
        self.run(rows, out)
            .map_err(|e| format!("{}: {e}", self.model.path.display()))?;
        Ok(())
    }
}
