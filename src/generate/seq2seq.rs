//! An encoder–decoder generator (TIGER / T5) exported by optimum:
//! `encoder_model.onnx` plus `decoder_model.onnx` and
//! `decoder_with_past_model.onnx`, or `decoder_model_merged.onnx` (its
//! `use_cache_branch` input picks the branch), or `decoder_model.onnx`
//! alone (no cache: the whole decoder sequence each step).
//!
//! The history goes to the encoder once per request, not per beam. The
//! decoder starts from the decoder-start token; its first call computes the
//! cross-attention cache (`present.N.encoder.*`), which every later step
//! takes by request — a request's beams share it — while the self-attention
//! cache follows beam parents.

use std::path::{Path, PathBuf};

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType};

use super::GenerateError;
use super::beam::{ModelError, Row, StepModel};
use super::files::{DECODER_FILE, DECODER_MERGED_FILE, DECODER_WITH_PAST_FILE, ENCODER_FILE};
use super::float::Float;
use super::gather::{GatherPool, gather_float, zeros};
use super::model::BatchModel;
use super::onnx::tensor;
use super::resident::Resident;
use super::runtime::{Device, RuntimeOptions, open_session};
use super::scores::{ScoreSlice, last_log_probs};
use super::sidecar::Sidecar;

/// How the decoder runs.
enum Decoder {
    /// `decoder_model.onnx` for the first step, `decoder_with_past_model.onnx`
    /// (if exported) for the rest.
    Split {
        first: Session,
        with_past: Option<Session>,
    },
    /// `decoder_model_merged.onnx`: both branches in one graph.
    Merged(Session),
}

/// The shapes and types the decoder graphs agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DecoderContract {
    layers: usize,
    heads: usize,
    head_dim: usize,
    cache_type: Float,
    logits_type: Float,
    vocab: Option<usize>,
}

/// A loaded encoder–decoder generator.
pub struct Seq2SeqModel {
    encoder: Session,
    hidden_type: Float,
    hidden_size: usize,
    decoder: Decoder,
    contract: DecoderContract,
    sidecar: Sidecar,
    decoder_start: i64,
    device: Device,
    dir: PathBuf,
    /// Host buffers of the gathered caches, kept from step to step (host
    /// decoding).
    pool: GatherPool,
    /// The helper graphs of device-resident decoding (`None`: host decoding).
    resident: Option<Resident>,
}

fn model_err(path: &Path, problem: impl Into<String>) -> GenerateError {
    GenerateError::Model {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// `name` is an int64 `[batch, seq]` input or output.
fn check_ids(session: &Session, name: &str) -> Result<(), String> {
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == name)
        .ok_or_else(|| format!("no {name} input"))?;
    match tensor(input.dtype()) {
        Some((TensorElementType::Int64, s)) if s.len() == 2 => Ok(()),
        _ => Err(format!("input {name} must be int64 [batch, seq]")),
    }
}

/// `past_key_values.N.decoder.key` style names: (layer, decoder?, value?).
fn parse_seq2seq_cache(name: &str, prefix: &str) -> Option<(usize, bool, bool)> {
    let rest = name.strip_prefix(prefix)?;
    let mut parts = rest.split('.');
    let layer = parts.next()?.parse().ok()?;
    let decoder = match parts.next()? {
        "decoder" => true,
        "encoder" => false,
        _ => return None,
    };
    let value = match parts.next()? {
        "key" => false,
        "value" => true,
        _ => return None,
    };
    parts.next().is_none().then_some((layer, decoder, value))
}

impl DecoderContract {
    /// Reads a decoder graph: which inputs it takes (`with_past`: the past
    /// caches; `merged`: `use_cache_branch` too) and what it returns.
    fn detect(session: &Session, with_past: bool, merged: bool) -> Result<Self, String> {
        check_ids(session, "input_ids")?;
        check_ids(session, "encoder_attention_mask")?;
        let mut past = Vec::new();
        let mut hidden = false;
        let mut branch = false;
        for input in session.inputs() {
            let name = input.name();
            let (ty, shape) =
                tensor(input.dtype()).ok_or_else(|| format!("input {name} is not a tensor"))?;
            match name {
                "input_ids" | "encoder_attention_mask" => {}
                "encoder_hidden_states" => hidden = true,
                "use_cache_branch" => {
                    if ty != TensorElementType::Bool {
                        return Err("input use_cache_branch must be bool".into());
                    }
                    branch = true;
                }
                _ => {
                    let (layer, _, _) =
                        parse_seq2seq_cache(name, "past_key_values.").ok_or_else(|| {
                            format!(
                                "input {name} is not part of the seq2seq decoder contract \
                             (input_ids, encoder_attention_mask, encoder_hidden_states, \
                             past_key_values.N.decoder|encoder.key|value, use_cache_branch)"
                            )
                        })?;
                    let float = Float::of(ty)
                        .filter(|_| shape.len() == 4 && shape[1] > 0 && shape[3] > 0)
                        .ok_or_else(|| {
                            format!("input {name} must be a float [batch, heads, seq, head_dim] with fixed heads and head size")
                        })?;
                    past.push((layer, float, shape[1] as usize, shape[3] as usize));
                }
            }
        }
        if merged != branch {
            return Err(if merged {
                "a merged decoder needs a use_cache_branch input".into()
            } else {
                "input use_cache_branch belongs to a merged decoder (decoder_model_merged.onnx)"
                    .into()
            });
        }
        if (with_past || merged) && past.is_empty() {
            return Err("no past_key_values inputs".into());
        }
        if !with_past && !merged && !past.is_empty() {
            return Err("the first-step decoder takes no past_key_values".into());
        }
        if !hidden && !with_past {
            return Err("no encoder_hidden_states input".into());
        }
        let mut logits = None;
        let mut present = 0;
        for output in session.outputs() {
            let name = output.name();
            if name == "logits" {
                let (ty, shape) = tensor(output.dtype()).ok_or("output logits is not a tensor")?;
                let float = Float::of(ty).filter(|_| shape.len() == 3).ok_or_else(|| {
                    format!("output logits must be a float [batch, seq, vocab], is {ty:?}")
                })?;
                let v = shape[2];
                logits = Some((float, (v > 0).then_some(v as usize)));
            } else if parse_seq2seq_cache(name, "present.").is_some() {
                present += 1;
            }
        }
        let (logits_type, vocab) = logits.ok_or("the decoder has no logits output")?;
        let layers = if past.is_empty() {
            present / 4
        } else {
            past.len() / 4
        };
        let (heads, head_dim, cache_type) = match past.first() {
            Some(&(_, t, h, d)) => {
                if past.iter().any(|p| p.1 != t || p.2 != h || p.3 != d) {
                    return Err(
                        "past_key_values inputs disagree on type, heads or head size".into(),
                    );
                }
                (h, d, t)
            }
            None => (0, 0, logits_type),
        };
        if layers == 0 {
            return Err("no present.N.decoder|encoder outputs".into());
        }
        Ok(DecoderContract {
            layers,
            heads,
            head_dim,
            cache_type,
            logits_type,
            vocab,
        })
    }
}

impl Seq2SeqModel {
    /// Opens an optimum seq2seq export folder with its sidecar
    /// (`generator.json` in the folder unless given).
    pub fn open(
        dir: &Path,
        sidecar: Option<&Path>,
        opts: &RuntimeOptions,
    ) -> Result<Self, GenerateError> {
        let sidecar_path = Sidecar::path_or_default(sidecar, dir);
        let encoder_path = dir.join(ENCODER_FILE);
        let (encoder, device) = open_session(&encoder_path, opts)?;
        check_ids(&encoder, "input_ids")
            .and_then(|_| check_ids(&encoder, "attention_mask"))
            .map_err(|p| model_err(&encoder_path, p))?;
        let (hidden_type, hidden_size) = encoder
            .outputs()
            .iter()
            .find(|o| o.name() == "last_hidden_state")
            .and_then(|o| tensor(o.dtype()))
            .and_then(|(ty, s)| Some((Float::of(ty)?, s)))
            .filter(|(_, s)| s.len() == 3 && s[2] > 0)
            .map(|(t, s)| (t, s[2] as usize))
            .ok_or_else(|| {
                model_err(
                    &encoder_path,
                    "the encoder needs a float last_hidden_state output [batch, seq, hidden]",
                )
            })?;

        let open = |file: &str, with_past: bool, merged: bool| {
            let path = dir.join(file);
            let (session, _) = open_session(&path, opts)?;
            let contract = DecoderContract::detect(&session, with_past, merged)
                .map_err(|p| model_err(&path, p))?;
            Ok::<_, GenerateError>((session, contract))
        };
        let (decoder, contract) = if dir.join(DECODER_FILE).is_file() {
            let (first, mut contract) = open(DECODER_FILE, false, false)?;
            let with_past = if dir.join(DECODER_WITH_PAST_FILE).is_file() {
                let (s, c) = open(DECODER_WITH_PAST_FILE, true, false)?;
                if c.layers != contract.layers || c.logits_type != contract.logits_type {
                    return Err(model_err(
                        &dir.join(DECODER_WITH_PAST_FILE),
                        format!(
                            "{} layers / {:?} logits, but {DECODER_FILE} has {} / {:?}",
                            c.layers, c.logits_type, contract.layers, contract.logits_type
                        ),
                    ));
                }
                contract = c;
                Some(s)
            } else {
                tracing::warn!(
                    dir = %dir.display(),
                    "no {DECODER_WITH_PAST_FILE}: every step feeds the whole decoder sequence \
                     (export with `--task text2text-generation-with-past`)"
                );
                None
            };
            (Decoder::Split { first, with_past }, contract)
        } else if dir.join(DECODER_MERGED_FILE).is_file() {
            let (s, c) = open(DECODER_MERGED_FILE, true, true)?;
            (Decoder::Merged(s), c)
        } else {
            return Err(model_err(
                dir,
                format!(
                    "an encoder–decoder export needs {DECODER_FILE} (+ {DECODER_WITH_PAST_FILE}) or {DECODER_MERGED_FILE} beside {ENCODER_FILE}"
                ),
            ));
        };
        let sidecar = Sidecar::load_for(&sidecar_path, contract.vocab)?;
        let decoder_start = decoder_start_id(dir, &sidecar)?;
        let cached = !matches!(
            decoder,
            Decoder::Split {
                with_past: None,
                ..
            }
        );
        let resident = Resident::for_model(
            opts,
            device,
            cached.then_some((2 * contract.layers, contract.cache_type)),
            (contract.logits_type, 3),
            &sidecar,
        )
        .map_err(|p| model_err(dir, p))?;
        tracing::info!(
            dir = %dir.display(),
            %device,
            layers = contract.layers,
            cached,
            merged = matches!(decoder, Decoder::Merged(_)),
            cache_type = ?contract.cache_type,
            cache_memory = %Resident::memory_of(resident.as_ref(), device),
            decoder_start,
            "encoder-decoder generator loaded"
        );
        Ok(Seq2SeqModel {
            encoder,
            hidden_type,
            hidden_size,
            decoder,
            contract,
            sidecar,
            decoder_start,
            device,
            dir: dir.to_path_buf(),
            pool: GatherPool::default(),
            resident,
        })
    }

    /// A search over these prompts (the encoder's input, one per request).
    pub fn batch(&mut self, prompts: Vec<Vec<i64>>) -> Seq2SeqBatch<'_> {
        Seq2SeqBatch {
            model: self,
            prompts,
            encoded: None,
            self_cache: Vec::new(),
            width: 0,
            cross: Vec::new(),
            cross_row: Vec::new(),
        }
    }
}

/// The decoder-start token: the sidecar's `decoder_start_id`, else
/// `decoder_start_token_id` of the export's `config.json`.
fn decoder_start_id(dir: &Path, sidecar: &Sidecar) -> Result<i64, GenerateError> {
    if let Some(id) = sidecar.decoder_start_id {
        return Ok(i64::from(id));
    }
    let path = dir.join("config.json");
    let from_config = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("decoder_start_token_id")?.as_u64());
    match from_config {
        Some(id) if id < u64::from(sidecar.vocab_size) => Ok(id as i64),
        Some(id) => Err(model_err(
            &path,
            format!(
                "decoder_start_token_id {id} is not below vocab_size {}",
                sidecar.vocab_size
            ),
        )),
        None => Err(model_err(
            dir,
            "no decoder-start token: set decoder_start_id in the sidecar or \
             decoder_start_token_id in config.json",
        )),
    }
}

impl BatchModel for Seq2SeqModel {
    fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }
    fn device(&self) -> Device {
        self.device
    }
    fn source(&self) -> &Path {
        &self.dir
    }
    fn batch(&mut self, prompts: Vec<Vec<i64>>) -> Box<dyn StepModel + '_> {
        Box::new(Seq2SeqModel::batch(self, prompts))
    }
}

/// The encoder's output for a batch's requests.
struct Encoded {
    /// `[requests, seq, hidden]`.
    hidden: DynValue,
    /// `[requests, seq]`, right-padded.
    mask: Vec<i64>,
    seq: usize,
}

/// One batch of requests being searched; implements [`StepModel`].
pub struct Seq2SeqBatch<'m> {
    model: &'m mut Seq2SeqModel,
    prompts: Vec<Vec<i64>>,
    encoded: Option<Encoded>,
    /// The last call's `present.N.decoder.*` (layer-major, key then value).
    self_cache: Vec<DynValue>,
    /// Decoder tokens the self-attention cache holds.
    width: usize,
    /// The first call's `present.N.encoder.*`, one row per request.
    cross: Vec<DynValue>,
    /// Per request: its row in `cross`.
    cross_row: Vec<usize>,
}

fn cache_input(prefix: &str, k: usize, decoder: bool) -> String {
    let kind = if k.is_multiple_of(2) { "key" } else { "value" };
    let side = if decoder { "decoder" } else { "encoder" };
    format!("{prefix}{}.{side}.{kind}", k / 2)
}

type Inputs<'v> = Vec<(String, SessionInputValue<'v>)>;

impl Seq2SeqBatch<'_> {
    /// Runs the encoder over every request's prompt, right-padded.
    fn encode(&mut self) -> Result<(), ort::Error> {
        let pad = i64::from(self.model.sidecar.pad_id);
        let seq = self.prompts.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let n = self.prompts.len();
        let (mut ids, mut mask) = (vec![pad; n * seq], vec![0i64; n * seq]);
        for (i, p) in self.prompts.iter().enumerate() {
            ids[i * seq..i * seq + p.len()].copy_from_slice(p);
            mask[i * seq..i * seq + p.len()].fill(1);
        }
        let inputs: Inputs<'_> = vec![
            (
                "input_ids".into(),
                Tensor::from_array(([n, seq], ids))?.into(),
            ),
            (
                "attention_mask".into(),
                Tensor::from_array(([n, seq], mask.clone()))?.into(),
            ),
        ];
        let mut out = self.model.encoder.run(inputs)?;
        let hidden = out
            .remove("last_hidden_state")
            .ok_or_else(|| ort::Error::new("the encoder returned no last_hidden_state"))?;
        self.encoded = Some(Encoded { hidden, mask, seq });
        Ok(())
    }

    fn run(&mut self, rows: &[Row<'_>], out: &mut Vec<f32>) -> Result<(), ort::Error> {
        if self.encoded.is_none() {
            self.encode()?;
        }
        let n = rows.len();
        let first = rows.iter().all(|r| r.parent.is_none());
        let cached = !matches!(
            self.model.decoder,
            Decoder::Split {
                with_past: None,
                ..
            }
        );
        let merged = matches!(self.model.decoder, Decoder::Merged(_));
        let step_with_cache = cached && !first;
        let enc = self.encoded.as_ref().expect("encoded above");
        let c = self.model.contract.clone();
        let sidecar = &self.model.sidecar;
        let mask: Vec<i64> = rows
            .iter()
            .flat_map(|r| {
                enc.mask[r.request * enc.seq..(r.request + 1) * enc.seq]
                    .iter()
                    .copied()
            })
            .collect();
        let mut fed: Vec<(String, DynValue)> = vec![(
            "encoder_attention_mask".into(),
            Tensor::from_array(([n, enc.seq], mask))?.into_dyn(),
        )];
        if step_with_cache {
            let ids: Vec<i64> = rows
                .iter()
                .map(|r| {
                    sidecar.vocab_id(
                        *r.sid
                            .last()
                            .expect("a row after the first call has a token"),
                    )
                })
                .collect();
            fed.push((
                "input_ids".into(),
                Tensor::from_array(([n, 1], ids))?.into_dyn(),
            ));
        } else {
            // The whole decoder sequence: start token, then the SID so far
            // (every live row has the same length).
            let len = 1 + rows.first().map_or(0, |r| r.sid.len());
            let mut ids = Vec::with_capacity(n * len);
            for r in rows {
                if r.sid.len() + 1 != len {
                    return Err(ort::Error::new("decoder rows of unequal length"));
                }
                ids.push(self.model.decoder_start);
                ids.extend(r.sid.iter().map(|&t| sidecar.vocab_id(t)));
            }
            fed.push((
                "input_ids".into(),
                Tensor::from_array(([n, len], ids))?.into_dyn(),
            ));
        }
        let hidden_type = self.model.hidden_type;
        if !step_with_cache || merged {
            // The merged graph takes encoder states on both branches; the
            // cached branch ignores them, so one position of zeros will do.
            let hidden = if step_with_cache {
                zeros(hidden_type, vec![n, 1, self.model.hidden_size])?
            } else {
                let by_request = rows.iter().map(|r| r.request);
                gather_float(
                    hidden_type,
                    &enc.hidden,
                    by_request,
                    vec![n, enc.seq, self.model.hidden_size],
                )?
            };
            fed.push(("encoder_hidden_states".into(), hidden));
        }
        if merged {
            if !step_with_cache {
                for k in 0..2 * c.layers {
                    for decoder in [true, false] {
                        let past = zeros(c.cache_type, vec![n, c.heads, 0, c.head_dim])?;
                        fed.push((cache_input("past_key_values.", k, decoder), past));
                    }
                }
            }
            fed.push((
                "use_cache_branch".into(),
                Tensor::from_array(([1usize], vec![step_with_cache]))?.into_dyn(),
            ));
        }
        // The self-attention cache follows beam parents; the cross-attention
        // cache, requests.
        let parents = || {
            rows.iter()
                .map(|r| r.parent.expect("a row after the first call has a parent"))
        };
        let by_request = || rows.iter().map(|r| self.cross_row[r.request]);
        let past_name = |k: usize, decoder| cache_input("past_key_values.", k, decoder);
        let mut wanted: Vec<String> = Vec::new();
        if cached {
            wanted.extend((0..2 * c.layers).map(|k| cache_input("present.", k, true)));
            if !step_with_cache {
                wanted.extend((0..2 * c.layers).map(|k| cache_input("present.", k, false)));
            }
        }
        let session = match &mut self.model.decoder {
            Decoder::Split {
                first: s,
                with_past: None,
            } => s,
            Decoder::Split {
                first: s,
                with_past: Some(p),
            } => {
                if step_with_cache {
                    p
                } else {
                    s
                }
            }
            Decoder::Merged(s) => s,
        };
        let mut caches = if let Some(resident) = &mut self.model.resident {
            let past = if step_with_cache {
                let own =
                    resident.gather(&self.self_cache, parents().map(|p| p as i64).collect())?;
                let cross =
                    resident.gather(&self.cross, by_request().map(|p| p as i64).collect())?;
                (own, cross)
            } else {
                Default::default()
            };
            let mut inputs: Vec<(String, &DynValue)> =
                fed.iter().map(|(k, v)| (k.clone(), v)).collect();
            for (k, (own, cross)) in past.0.iter().zip(&past.1).enumerate() {
                inputs.push((past_name(k, true), own));
                inputs.push((past_name(k, false), cross));
            }
            let kept: Vec<String> = std::iter::once("logits".to_string())
                .chain(wanted.iter().cloned())
                .collect();
            let mut outputs = resident.run(session, &inputs, &kept)?;
            let logits = outputs.remove(0);
            resident.scores(&logits, n, out)?;
            outputs
        } else {
            let mut inputs: Inputs<'_> = fed.into_iter().map(|(k, v)| (k, v.into())).collect();
            if step_with_cache {
                // Pool buffer 2k: self-attention cache k by beam parent; 2k + 1:
                // cross-attention cache k by request.
                let pool = &mut self.model.pool;
                for k in 0..2 * c.layers {
                    pool.buf(2 * k, c.cache_type).gather(
                        &self.self_cache[k],
                        parents(),
                        c.heads * self.width * c.head_dim,
                    )?;
                    pool.buf(2 * k + 1, c.cache_type).gather(
                        &self.cross[k],
                        by_request(),
                        c.heads * enc.seq * c.head_dim,
                    )?;
                }
                let pool = &self.model.pool;
                for k in 0..2 * c.layers {
                    let own = pool.view(2 * k, vec![n, c.heads, self.width, c.head_dim])?;
                    inputs.push((past_name(k, true), own));
                    let cross = pool.view(2 * k + 1, vec![n, c.heads, enc.seq, c.head_dim])?;
                    inputs.push((past_name(k, false), cross));
                }
            }
            let mut outputs = session.run(inputs)?;
            last_log_probs(
                &outputs["logits"],
                c.logits_type,
                3,
                n,
                ScoreSlice::of(&self.model.sidecar),
                out,
            )?;
            wanted
                .iter()
                .map(|name| {
                    outputs
                        .remove(name)
                        .ok_or_else(|| ort::Error::new(format!("the decoder returned no {name}")))
                })
                .collect::<Result<_, _>>()?
        };
        if cached {
            if !step_with_cache {
                self.cross = caches.split_off(2 * c.layers);
                self.cross_row = vec![0; self.prompts.len()];
                for (i, r) in rows.iter().enumerate() {
                    self.cross_row[r.request] = i;
                }
                self.width = 0;
            }
            self.self_cache = caches;
            self.width += 1;
        }
        Ok(())
    }
}

impl StepModel for Seq2SeqBatch<'_> {
    fn sid_tokens(&self) -> usize {
        self.model.sidecar.sid_token_limit as usize
    }
    fn log_probs(&mut self, rows: &[Row<'_>], out: &mut Vec<f32>) -> Result<(), ModelError> {
        self.run(rows, out)
            .map_err(|e| format!("{}: {e}", self.model.dir.display()))?;
        Ok(())
    }
}
