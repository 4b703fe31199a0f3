//! `sidx demo`: the SID pipeline on a built-in synthetic catalog — embeddings,
//! RQ SIDs and their hourglass, then the top-K mitigation and its hourglass.

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
}

pub fn run(a: &DemoArgs, progress: &Progress) -> Result<()> {
    let cfg = SynthConfig {
        items: a.items,
        ..SynthConfig::default()
    };
    progress.note(&format!(
        "1/3 synthetic catalog: {} items × {} dims",
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

    progress.note("2/3 residual quantization (3 layers)");
    let rq_dir = a.out.join("rq");
    let job = QuantizeJob {
        embeddings: emb,
        ids: Some(ids),
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
        "3/3 variable-length SIDs: drop layer 2 behind the top {k} tokens"
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
        "layer 2: normalised entropy {:.3} → {:.3}, Gini {:.3} → {:.3}; artefacts in {}",
        l2_before.normalized_entropy,
        l2_after.normalized_entropy,
        l2_before.gini,
        l2_after.gini,
        a.out.display()
    );
    Ok(())
}
