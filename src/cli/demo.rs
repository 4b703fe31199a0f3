//! `sidx demo`: the SID pipeline on a built-in synthetic catalog — embeddings,
//! RQ SIDs and their hourglass, then the top-K mitigation and its hourglass —
//! and serving: both gRPC services on loopback answering `Generate` requests
//! with the committed generator (see `demo_serve`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use sidx::fsx::Staging;
use sidx::hourglass::{self, DEFAULT_HEAD_SHARE, HourglassReport, Strategy};
use sidx::pipeline::{self, QuantizeJob, SIDS_FILE};
use sidx::progress::Progress;
use sidx::quantize::TrainConfig;
use sidx::sid::CollisionMode;
use sidx::synth::{self, SynthConfig};

#[derive(Args)]
pub struct DemoArgs {
    /// Where the artefacts go.
    #[arg(long, default_value = "sidx-demo")]
    out: PathBuf,
    /// Items in the synthetic catalog.
    #[arg(long, default_value_t = 20_000)]
    items: usize,
    /// Codebook size of each of the 3 layers.
    #[arg(long, default_value_t = 256)]
    codebook_size: usize,
    /// K of the top-K mitigation (default: a tenth of the codebook).
    #[arg(long)]
    k: Option<usize>,
    /// The generator served: model_kv.onnx, generator.json and the sids.tsv it was trained on
    /// [default: tests/fixtures/generator of the checkout].
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Users' histories (`user item …`); the last item of each is held out. Random
    /// catalog items when the file is missing.
    #[arg(long, default_value = "../shared/data/amazon_scientific/sequences.txt")]
    sequences: PathBuf,
    /// Users to generate for.
    #[arg(long, default_value_t = 200)]
    users: usize,
}

pub fn run(a: &DemoArgs, progress: &Progress) -> Result<()> {
    let cfg = SynthConfig {
        items: a.items,
        ..SynthConfig::default()
    };
    progress.note(&format!(
        "1/5 synthetic catalog: {} items × {} dims",
        cfg.items, cfg.dim
    ));
    let catalog = a.out.join("catalog");
    let (emb, ids) = (catalog.join("embeddings.npy"), catalog.join("ids.txt"));
    let x = synth::generate(&cfg);
    let mut staging = Staging::new();
    staging.write(&emb, |w| sidx::npy::write_to(w, &[cfg.items, cfg.dim], &x))?;
    let id_text = synth::ids(cfg.items).join("\n") + "\n";
    staging.write(&ids, |w| w.write_all(id_text.as_bytes()))?;
    staging.commit()?;

    progress.note("2/5 residual quantization (3 layers)");
    let rq_dir = a.out.join("rq");
    let job = QuantizeJob {
        embeddings: emb,
        ids: Some(ids),
        columns: Default::default(),
        train: TrainConfig {
            layers: 3,
            codebook_size: a.codebook_size,
            train_sample: None,
            ..TrainConfig::default()
        },
        beam: 1,
        collisions: CollisionMode::Disambiguate,
        head_share: DEFAULT_HEAD_SHARE,
        out: rq_dir.clone(),
    };
    let q = job.run(progress)?;

    let k = a.k.unwrap_or((a.codebook_size / 10).max(1));
    progress.note(&format!(
        "3/5 variable-length SIDs: drop layer 2 behind the top {k} tokens"
    ));
    let topk_dir = a.out.join(format!("top{k}"));
    let mitigated = hourglass::mitigate(&q.table, Strategy::TopK(k), CollisionMode::Disambiguate)?;
    let after = HourglassReport::measure(&mitigated, DEFAULT_HEAD_SHARE);
    let mut staging = Staging::new();
    staging.write(&topk_dir.join(SIDS_FILE), |w| mitigated.write_to(w))?;
    pipeline::stage_report(&mut staging, &topk_dir, &mitigated, &after)?;
    staging.commit()?;

    println!("RQ SIDs ({}):\n{}", rq_dir.display(), q.report.summary());
    println!(
        "top-{k} variable-length SIDs ({}):\n{}",
        topk_dir.display(),
        after.summary()
    );
    let (l2_before, l2_after) = (&q.report.layers[1], &after.layers[1]);
    println!(
        "layer 2: normalised entropy {:.3} → {:.3}, Gini {:.3} → {:.3}",
        l2_before.normalized_entropy, l2_after.normalized_entropy, l2_before.gini, l2_after.gini,
    );

    let model_dir = a
        .model_dir
        .clone()
        .unwrap_or_else(super::demo_serve::default_model_dir);
    progress.note(&format!(
        "4/5 index service + generator service on loopback (model {})",
        model_dir.display()
    ));
    progress.note(&format!(
        "5/5 Generate for {} users over gRPC, constrained and unconstrained",
        a.users
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let s = runtime.block_on(super::demo_serve::serve_and_generate(
        &a.out,
        &model_dir,
        Some(&a.sequences),
        a.users,
    ))?;
    println!(
        "\nserving: index service {} → generator service {} (index mirrored, version {})",
        s.index_addr, s.generator_addr, s.index_version
    );
    println!(
        "{} users ({} histories): constrained {} of {} SIDs invalid; unconstrained {} of {} invalid ({:.1}%); latency p50 {:.1} ms, p99 {:.1} ms{}",
        s.users,
        if s.real_histories { "real" } else { "random" },
        s.constrained_invalid,
        s.constrained_sids,
        s.unconstrained_invalid,
        s.unconstrained_sids,
        100.0 * s.unconstrained_invalid as f64 / s.unconstrained_sids.max(1) as f64,
        s.p50_ms,
        s.p99_ms,
        s.recall_at_10.map_or(String::new(), |r| format!(
            "; held-out item in the top 10 for {:.1}%",
            100.0 * r
        )),
    );
    for line in &s.example {
        println!("  {line}");
    }
    println!("artefacts in {}", a.out.display());
    Ok(())
}
