//! `sidx bench generate`: what the index constraint costs in beam search.
//! Table 1 times the search alone (a model that returns fixed scores) on a
//! synthetic long-tailed catalog — STATIC's configuration by default (10M
//! SIDs, 2048 codes per layer) — constrained and unconstrained. Table 2 runs
//! an ONNX generator end to end on the same catalog and splits the time into
//! model and search. With `--device cuda` the model runs on the CUDA
//! execution provider, and `--compare-cpu` checks its results against CPU.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::SeedableRng;
use rand::seq::IndexedRandom;

use super::fixtures::{build_index, key_tokens, long_tailed_sids};
use sidx::generate::synthetic::{Scores, SyntheticScores};
use sidx::generate::{
    BeamConfig, Decoding, Device, ModelError, OnnxModel, RuntimeOptions, Search, beam_search,
};
use sidx::index::{Index, IndexStore, TokenId};
use sidx::progress::Progress;

#[derive(Args)]
pub struct GenerateBench {
    /// SIDs in the synthetic catalog.
    #[arg(long, default_value_t = 10_000_000)]
    sids: usize,
    /// Codes per layer (3 layers).
    #[arg(long, default_value_t = 2048)]
    codebook_size: u16,
    /// Beam widths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,50,70")]
    beams: Vec<usize>,
    /// Requests per batch, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,8")]
    batches: Vec<usize>,
    /// Batch × beam pairs instead of every --batches × --beams, e.g.
    /// 1x10,8x20,8x70,32x20.
    #[arg(long, value_delimiter = ',', value_parser = parse_pair)]
    configs: Vec<(usize, usize)>,
    /// Writes the end-to-end table's prompts (token ids, one list per
    /// request) as JSON, for a peer to run the same ones.
    #[arg(long)]
    prompts_out: Option<PathBuf>,
    /// Batches timed per configuration end to end (after one warm-up).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Batches timed per configuration of the search alone (after one warm-up).
    #[arg(long, default_value_t = 200)]
    search_repeats: usize,
    /// Items in each synthetic user history.
    #[arg(long, default_value_t = 5)]
    history: usize,
    /// ONNX generator for the end-to-end table (its sidecar's layout must be
    /// 3 × --codebook-size); none = search cost only.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Execution provider of the model: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// ONNX Runtime library [default: ORT_DYLIB_PATH, lib/ beside the executable, .ort/lib].
    #[arg(long, env = "SIDX_ORT_LIB")]
    ort_lib: Option<PathBuf>,
    /// Intra-op threads of the model (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    model_threads: usize,
    /// Where the cache and logits stay between steps, comma-separated: a table
    /// per entry (resident: the provider's memory; host: copied every step;
    /// auto: resident on CUDA, host on CPU).
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    decoding: Vec<Decoding>,
    /// With --device cuda: also run on CPU and compare the returned SIDs.
    #[arg(long)]
    compare_cpu: bool,
    /// Where the index is built (default: a temporary directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Index formats the search alone is timed on, comma-separated (the
    /// end-to-end table uses the first).
    #[arg(long, value_delimiter = ',', default_value = "1,2",
          value_parser = clap::value_parser!(u32).range(1..=2))]
    formats: Vec<u32>,
}

fn parse_pair(s: &str) -> Result<(usize, usize), String> {
    let (batch, beam) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not BATCHxBEAM, e.g. 8x20"))?;
    let n = |v: &str| {
        v.parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{s:?}: {v:?} is not a positive number"))
    };
    Ok((n(batch)?, n(beam)?))
}

impl GenerateBench {
    /// The (batch, beam) configurations timed.
    fn pairs(&self) -> Vec<(usize, usize)> {
        if !self.configs.is_empty() {
            return self.configs.clone();
        }
        self.batches
            .iter()
            .flat_map(|&batch| self.beams.iter().map(move |&beam| (batch, beam)))
            .collect()
    }
}

struct Timing {
    ms_per_batch: f64,
    steps: f64,
    model_ms: f64,
    search_ms: f64,
    invalid: usize,
    returned: usize,
}

fn time_batches(
    repeats: usize,
    mut run: impl FnMut() -> Result<Search, ModelError>,
) -> Result<Timing> {
    run().map_err(anyhow::Error::msg)?; // warm-up
    let mut t = Timing {
        ms_per_batch: 0.0,
        steps: 0.0,
        model_ms: 0.0,
        search_ms: 0.0,
        invalid: 0,
        returned: 0,
    };
    for _ in 0..repeats {
        let start = Instant::now();
        let s = run().map_err(anyhow::Error::msg)?;
        t.ms_per_batch += start.elapsed().as_secs_f64() * 1e3;
        t.steps += s.steps as f64;
        t.model_ms += s.model_time.as_secs_f64() * 1e3;
        t.search_ms += s.search_time.as_secs_f64() * 1e3;
        t.invalid += s.results.iter().map(|r| r.invalid).sum::<usize>();
        t.returned += s.results.iter().map(|r| r.sids.len()).sum::<usize>();
    }
    let n = repeats.max(1) as f64;
    t.ms_per_batch /= n;
    t.steps /= n;
    t.model_ms /= n;
    t.search_ms /= n;
    Ok(t)
}

fn configs(batch: usize, beam: usize, constrained: bool) -> Vec<BeamConfig> {
    let cfg = BeamConfig {
        beam,
        top_k: beam.min(10),
        constrained,
        max_len: 4,
    };
    vec![cfg; batch]
}

pub fn run(b: &GenerateBench, progress: &Progress) -> Result<()> {
    let root = match &b.workdir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("sidx-bench-generate-{}", std::process::id())),
    };
    let result = run_in(b, progress, &root);
    if b.workdir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

fn run_in(b: &GenerateBench, progress: &Progress, root: &std::path::Path) -> Result<()> {
    progress.note(&format!(
        "building a 3 × {} index of {} SIDs",
        b.codebook_size, b.sids
    ));
    let keys = long_tailed_sids(b.sids, b.codebook_size, None, b.seed);
    let mut indexes = Vec::new();
    for &format in &b.formats {
        let store = IndexStore::new(&root.join(format!("index-v{format}")));
        build_index(&store, &keys, b.codebook_size, "bench generate", format, "")?;
        indexes.push(store.open_current()?);
    }
    let index = indexes.first().context("--formats lists no format")?;
    // Every SID token, then end-of-SID.
    let vocab = index.used_token_limit() as usize + 1;
    println!(
        "catalog: {} SIDs (3 × {}, long-tailed), {} trie nodes; {} threads\n",
        index.sid_count(),
        b.codebook_size,
        index.manifest().nodes,
        rayon::current_num_threads()
    );

    println!("Search alone (fixed scores; the model's cost excluded), per beam step:");
    println!(
        "{:>5} {:>5} | {} | {:>16} | {:>12}",
        "batch",
        "beam",
        cells(&b.formats, |f| format!(
            "{:>14}",
            format!("constr. v{f} µs")
        )),
        "unconstrained µs",
        "constr./unc."
    );
    let per_step = |index: &Index, batch: usize, beam: usize, constrained: bool| -> Result<f64> {
        // Fixed scores: the search's cost with a free model.
        let mut m = SyntheticScores::new(vocab, b.seed, Scores::Fixed);
        let cfgs = configs(batch, beam, constrained);
        let t = time_batches(b.search_repeats, || beam_search(index, &mut m, &cfgs))?;
        Ok(t.search_ms * 1e3 / t.steps.max(1.0))
    };
    for (batch, beam) in b.pairs() {
        let constrained = indexes
            .iter()
            .map(|index| per_step(index, batch, beam, true))
            .collect::<Result<Vec<_>>>()?;
        let unconstrained = per_step(index, batch, beam, false)?;
        println!(
            "{batch:>5} {beam:>5} | {} | {unconstrained:>16.2} | {:>12.3}",
            cells(&constrained, |us| format!("{us:>14.2}")),
            constrained[0] / unconstrained
        );
    }

    let Some(model_path) = &b.model else {
        return Ok(());
    };
    let mut outcomes = Vec::new();
    let mut last = None;
    for &asked in &b.decoding {
        let decoding = asked.on(b.device);
        let opts = RuntimeOptions {
            library: b.ort_lib.clone(),
            device: b.device,
            allow_cpu_fallback: false,
            threads: b.model_threads,
            decoding,
        };
        let mut model = OnnxModel::open(model_path, None, &opts)?;
        model
            .sidecar()
            .check_index(index)
            .map_err(anyhow::Error::msg)
            .context("the model does not fit the benchmark catalog (train it with --layout)")?;
        let prompts = histories(index, &keys, &model, b);
        println!(
            "\nEnd to end with {} on {}, {decoding} decoding ({} KV-cache layers), ms per batch:",
            model_path.display(),
            model.device(),
            model.contract().cache_layers
        );
        println!(
            "{:>5} {:>5} | {:>10} {:>8} {:>9} {:>9} | {:>12} {:>9} | {:>9}",
            "batch",
            "beam",
            "constr. ms",
            "steps",
            "model ms",
            "search ms",
            "unconstr. ms",
            "search ms",
            "overhead"
        );
        if let Some(path) = &b.prompts_out {
            std::fs::write(path, serde_json::to_vec(&prompts)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        for (batch, beam) in b.pairs() {
            let p: Vec<Vec<i64>> = prompts.iter().take(batch).cloned().collect();
            let mut runs = Vec::new();
            for constrained in [true, false] {
                let cfgs = configs(batch, beam, constrained);
                runs.push(time_batches(b.repeats, || {
                    beam_search(index, &mut model.batch(p.clone()), &cfgs)
                })?);
            }
            let (c, u) = (&runs[0], &runs[1]);
            println!(
                "{batch:>5} {beam:>5} | {:>10.2} {:>8.1} {:>9.2} {:>9.3} | {:>12.2} {:>9.3} | {:>8.2}%",
                c.ms_per_batch,
                c.steps,
                c.model_ms,
                c.search_ms,
                u.ms_per_batch,
                u.search_ms,
                100.0 * c.search_ms / c.ms_per_batch
            );
            outcomes.push((decoding, batch, beam, u.invalid, u.returned));
        }
        last = Some((model, prompts));
    }
    println!("\nUnconstrained decoding, SIDs returned that no item has (the paper's Figure 5):");
    for (decoding, batch, beam, invalid, returned) in outcomes {
        println!(
            "  {decoding:>8} batch {batch:>2} beam {beam:>3}: {invalid:>5} of {returned:>5} ({:.1}%)",
            100.0 * invalid as f64 / returned.max(1) as f64
        );
    }

    if let Some((mut model, prompts)) = last
        && b.compare_cpu
        && b.device != Device::Cpu
    {
        compare_with_cpu(index, &mut model, model_path, &prompts, b)?;
    }
    Ok(())
}

/// One table cell per value, space-separated.
fn cells<T>(values: &[T], cell: impl Fn(&T) -> String) -> String {
    values.iter().map(cell).collect::<Vec<_>>().join(" ")
}

/// One prompt per request: the SIDs of `history` random catalog items.
fn histories(index: &Index, keys: &[u64], model: &OnnxModel, b: &GenerateBench) -> Vec<Vec<i64>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(b.seed);
    let n = b.pairs().iter().map(|p| p.0).max().unwrap_or(1);
    let mut tokens = Vec::new();
    (0..n)
        .map(|_| {
            let sids: Vec<Vec<TokenId>> = (0..b.history)
                .map(|_| {
                    key_tokens(*keys.choose(&mut rng).expect("a catalog"), &mut tokens);
                    tokens.clone()
                })
                .collect();
            model
                .sidecar()
                .prompt(sids.iter().map(Vec::as_slice), index.max_sid_len())
        })
        .collect()
}

/// The same constrained searches on CPU: identical SIDs expected, scores
/// within TF32's float32 MatMul error.
fn compare_with_cpu(
    index: &Index,
    model: &mut OnnxModel,
    path: &std::path::Path,
    prompts: &[Vec<i64>],
    b: &GenerateBench,
) -> Result<()> {
    let cpu_opts = RuntimeOptions {
        library: b.ort_lib.clone(),
        device: Device::Cpu,
        allow_cpu_fallback: false,
        threads: b.model_threads,
        decoding: Decoding::Auto,
    };
    let mut cpu = OnnxModel::open(path, None, &cpu_opts)?;
    let cfgs = configs(prompts.len(), 20, true);
    let on_gpu = beam_search(index, &mut model.batch(prompts.to_vec()), &cfgs)
        .map_err(anyhow::Error::msg)?;
    let on_cpu =
        beam_search(index, &mut cpu.batch(prompts.to_vec()), &cfgs).map_err(anyhow::Error::msg)?;
    let (mut same, mut total, mut max_diff) = (0, 0, 0f32);
    for (g, c) in on_gpu.results.iter().zip(&on_cpu.results) {
        for (x, y) in g.sids.iter().zip(&c.sids) {
            total += 1;
            if x.sid == y.sid {
                same += 1;
                max_diff = max_diff.max((x.score - y.score).abs());
            }
        }
    }
    println!(
        "\n{} vs cpu, {} requests, beam 20, top 10: {same} of {total} ranked SIDs identical, max |score difference| {max_diff:.2e}",
        model.device(),
        prompts.len()
    );
    if same * 10 < total * 9 {
        bail!("CUDA and CPU results disagree: {same} of {total} ranked SIDs identical");
    }
    Ok(())
}
