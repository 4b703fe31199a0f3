//! `sidx generate`: one request against a local index and an ONNX generator;
//! and the model flags `sidx serve generator` shares.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use sidx::generate::{
    Decoding, Device, GenerationRequest, Generator, GeneratorLimits, History, RuntimeOptions,
};
use sidx::index::{Index, IndexStore};

/// The generator model and how it runs.
#[derive(Args)]
pub struct ModelArgs {
    /// ONNX generator: a decoder-only file (input_ids, attention_mask[, position_ids][, past_key_values.N.key|value] → logits[, present.N.…]), or an export folder (model.onnx, or optimum's encoder_model.onnx + decoder_model[_merged|_with_past].onnx).
    #[arg(long, env = "SIDX_MODEL")]
    model: PathBuf,
    /// Sidecar JSON (token mapping, special ids) [default: generator.json beside --model, or in it].
    #[arg(long, env = "SIDX_SIDECAR")]
    sidecar: Option<PathBuf>,
    /// Execution provider: cpu, cuda or cuda:N.
    #[arg(long, env = "SIDX_DEVICE", default_value = "cpu")]
    device: Device,
    /// With --device cuda: run on CPU if the CUDA provider can't be used, instead of failing.
    #[arg(long, env = "SIDX_ALLOW_CPU_FALLBACK")]
    allow_cpu_fallback: bool,
    /// Where the KV cache and logits stay between steps: resident (the
    /// execution provider's memory; only the SID columns' scores reach the
    /// host), host (copied to the host and gathered there every step), or
    /// auto (resident on CUDA, host on CPU).
    #[arg(long, env = "SIDX_DECODING", default_value = "auto")]
    decoding: Decoding,
    /// ONNX Runtime library [default: ORT_DYLIB_PATH, lib/ beside the executable, .ort/lib].
    #[arg(long, env = "SIDX_ORT_LIB")]
    ort_lib: Option<PathBuf>,
    /// Intra-op threads of the model (0 = ONNX Runtime's default).
    #[arg(long, env = "SIDX_MODEL_THREADS", default_value_t = 0)]
    model_threads: usize,
    /// Beam width when a request gives none.
    #[arg(long, default_value_t = GeneratorLimits::default().default_beam)]
    default_beam: usize,
    /// Largest beam width a request may ask for.
    #[arg(long, default_value_t = GeneratorLimits::default().max_beam)]
    max_beam: usize,
    /// SIDs returned when a request gives no top-k.
    #[arg(long, default_value_t = GeneratorLimits::default().default_top_k)]
    default_top_k: usize,
    /// Requests decoded together in one batch at most.
    #[arg(long, default_value_t = GeneratorLimits::default().max_batch)]
    max_batch: usize,
    /// Requests waiting for the model beyond which new ones get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = GeneratorLimits::default().queue)]
    queue: usize,
}

impl ModelArgs {
    /// Loads the model, checks it against `index` and starts its thread.
    pub fn start(&self, index: &Index) -> Result<Generator> {
        let opts = RuntimeOptions {
            library: self.ort_lib.clone(),
            device: self.device,
            allow_cpu_fallback: self.allow_cpu_fallback,
            threads: self.model_threads,
            decoding: self.decoding,
        };
        let model = sidx::generate::open_model(&self.model, self.sidecar.as_deref(), &opts)?;
        let limits = GeneratorLimits {
            default_beam: self.default_beam,
            max_beam: self.max_beam,
            default_top_k: self.default_top_k,
            max_batch: self.max_batch,
            queue: self.queue,
            ..GeneratorLimits::default()
        };
        Ok(Generator::start_boxed(model, index, limits)?)
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Index root directory (its current version is used).
    #[arg(long, env = "SIDX_INDEX")]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// The user's history as item ids, oldest first, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "history_tokens"
    )]
    history: Vec<String>,
    /// ...or as the model's vocabulary ids, used verbatim as the prompt.
    #[arg(long, value_delimiter = ',', conflicts_with = "history")]
    history_tokens: Vec<u32>,
    /// Beam width [default: --default-beam].
    #[arg(long)]
    beam: Option<usize>,
    /// SIDs to return [default: --default-top-k].
    #[arg(long)]
    top_k: Option<usize>,
    /// Decode without the index constraint and count invalid SIDs.
    #[arg(long)]
    unconstrained: bool,
    /// Print the response as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &GenerateArgs) -> Result<()> {
    let index = IndexStore::new(&a.index)
        .open_current()
        .with_context(|| format!("opening the index in {}", a.index.display()))?;
    let index: Arc<Index> = Arc::new(index);
    let generator = a.model.start(&index)?;
    let history = if a.history.is_empty() {
        History::Tokens(a.history_tokens.clone())
    } else {
        History::Items(a.history.clone())
    };
    let req = GenerationRequest {
        history,
        beam: a.beam,
        top_k: a.top_k,
        constrained: !a.unconstrained,
        deadline: None,
    };
    let r = generator.generate(Arc::clone(&index), req)?;
    if a.json {
        let items: Vec<serde_json::Value> = r
            .items
            .iter()
            .map(|it| {
                serde_json::json!({
                    "item_id": it.item_id,
                    "sid": sidx::sid::DisplaySid(&index.tokens(&it.sid)).to_string(),
                    "score": it.score,
                })
            })
            .collect();
        let out = serde_json::json!({
            "items": items,
            "invalid_sids": r.invalid_sids,
            "index_version": r.index_version,
            "device": generator.device().to_string(),
            "steps": r.steps,
            "model_ms": r.model_time.as_secs_f64() * 1e3,
            "search_ms": r.search_time.as_secs_f64() * 1e3,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:>4}  {:<16} {:<24} {:>9}",
            "rank", "item", "sid", "log-prob"
        );
        for (i, it) in r.items.iter().enumerate() {
            let sid = sidx::sid::DisplaySid(&index.tokens(&it.sid)).to_string();
            let item = if it.item_id.is_empty() {
                "(no item)"
            } else {
                &it.item_id
            };
            println!("{:>4}  {item:<16} {sid:<24} {:>9.4}", i + 1, it.score);
        }
        println!(
            "index version {}, model on {}, {} steps: model {:.2} ms, constrained search {:.3} ms, invalid SIDs {}",
            r.index_version,
            generator.device(),
            r.steps,
            r.model_time.as_secs_f64() * 1e3,
            r.search_time.as_secs_f64() * 1e3,
            r.invalid_sids
        );
    }
    Ok(())
}
