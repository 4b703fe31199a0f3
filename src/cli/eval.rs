//! `sidx eval`: Recall@K / NDCG@K of a generator on held-out interactions,
//! the head/tail split by layer-2 token, and unconstrained invalid ratios.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use sidx::eval::{self, EvalConfig};
use sidx::index::IndexStore;
use sidx::progress::Progress;
use sidx::sid::SidTable;

use super::generate::ModelArgs;

#[derive(Args)]
pub struct EvalArgs {
    /// Index root directory (its current version is used).
    #[arg(long, env = "SIDX_INDEX")]
    index: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Users' interactions: `user item item …` per line, oldest first; each
    /// user's last item is the target, the ones before it the history.
    #[arg(long)]
    sequences: PathBuf,
    /// Beam width (= SIDs returned; Recall@50 needs at least 50).
    #[arg(long, default_value_t = 50)]
    beam: usize,
    /// Skip unconstrained decoding (its recall and invalid ratios).
    #[arg(long)]
    constrained_only: bool,
    /// SID file whose layer-2 tokens define head and tail (default: the index's own SIDs).
    #[arg(long)]
    reference_sids: Option<PathBuf>,
    /// Share of layer-2 items the head tokens hold.
    #[arg(long, default_value_t = sidx::hourglass::DEFAULT_HEAD_SHARE)]
    head_share: f64,
    /// Evaluate the first N users only (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Where report.json and eval.svg go.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: &EvalArgs, progress: &Progress) -> Result<()> {
    let index = IndexStore::new(&a.index)
        .open_current()
        .with_context(|| format!("opening the index in {}", a.index.display()))?;
    let index = std::sync::Arc::new(index);
    let mut cases = eval::leave_one_out(&a.sequences).map_err(anyhow::Error::msg)?;
    if cases.is_empty() {
        bail!("{}: no user with at least two items", a.sequences.display());
    }
    if a.limit > 0 {
        cases.truncate(a.limit);
    }
    let reference = match &a.reference_sids {
        Some(p) => SidTable::read(p)?,
        None => {
            let mut t = SidTable::new(sidx::sid::SidHeader::new(
                index.layout(),
                index.manifest().collisions,
            ));
            for (sid, item) in index.entries() {
                t.push(item, &index.tokens(&sid));
            }
            t
        }
    };
    let groups = eval::groups(&reference, a.head_share);
    let generator = a.model.start(&index)?;
    let modes = if a.constrained_only { 1 } else { 2 };
    let bar = progress.bar((cases.len() * modes) as u64, "evaluating");
    let cfg = EvalConfig {
        beam: a.beam,
        unconstrained: !a.constrained_only,
    };
    let report = eval::evaluate(&generator, &index, &cases, &groups, &cfg, &|done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    print!("{}", report.table());
    if let Some(out) = &a.out {
        // Both files or neither.
        let json = serde_json::to_string_pretty(&report)?;
        let svg = eval::render_svg(&report);
        let mut staging = sidx::fsx::Staging::new();
        staging.create_dir(out)?;
        staging.write(&out.join("report.json"), |w| w.write_all(json.as_bytes()))?;
        staging.write(&out.join("eval.svg"), |w| w.write_all(svg.as_bytes()))?;
        staging.commit()?;
        println!("wrote {}/report.json and eval.svg", out.display());
    }
    Ok(())
}
