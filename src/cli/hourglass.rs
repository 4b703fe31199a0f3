//! `sidx hourglass` and `sidx mitigate`: measure the hourglass, and apply the paper's fixes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::Collisions;
use sidx::hourglass::compare::Compared;
use sidx::hourglass::{DEFAULT_HEAD_SHARE, HourglassReport, Strategy};
use sidx::pipeline;
use sidx::sid::SidTable;

#[derive(Args)]
pub struct HourglassArgs {
    /// SID file (TSV `item_id<TAB>layer:code …`).
    #[arg(long, required_unless_present = "compare")]
    sids: Option<PathBuf>,
    /// Several SID files side by side (methods, seeds, mitigations): one
    /// table, or one SVG with --svg; the MSE comes from a quantizer.json
    /// beside a file.
    #[arg(long, num_args = 2.., conflicts_with = "sids")]
    compare: Vec<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw the hourglass into this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Share of layer-2 items the "head" tokens hold.
    #[arg(long, default_value_t = DEFAULT_HEAD_SHARE)]
    head_share: f64,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    /// Drop layer 2 for every item.
    DropLayer2,
    /// Drop layer 2 for items behind the K most frequent layer-2 tokens (--k).
    TopK,
    /// Drop layer 2 for items behind tokens holding more than a share P of items (--p).
    TopP,
}

#[derive(Args)]
pub struct MitigateArgs {
    /// Input SID file (quantizer SIDs, not already mitigated).
    #[arg(long)]
    sids: PathBuf,
    /// Output SID file (variable-length SIDs).
    #[arg(long)]
    out: PathBuf,
    /// Which layer-2 tokens to drop.
    #[arg(long, value_enum)]
    strategy: StrategyArg,
    /// K of top-k.
    #[arg(long, required_if_eq("strategy", "top-k"))]
    k: Option<usize>,
    /// P of top-p, a share in (0, 1).
    #[arg(long, required_if_eq("strategy", "top-p"))]
    p: Option<f64>,
    /// How to resolve the collisions dropping creates (default: as the input file says).
    #[arg(long, value_enum)]
    collisions: Option<Collisions>,
    /// Share of layer-2 items the "head" tokens hold in the reports.
    #[arg(long, default_value_t = DEFAULT_HEAD_SHARE)]
    head_share: f64,
}

pub fn hourglass(a: &HourglassArgs) -> Result<()> {
    if !a.compare.is_empty() {
        return compare(a);
    }
    let sids = a.sids.as_ref().context("--sids or --compare")?;
    let table = SidTable::read(sids)?;
    let report = HourglassReport::measure(&table, a.head_share);
    if let Some(svg) = &a.svg {
        let doc = sidx::hourglass::render_svg(&table, &report);
        sidx::fsx::write_atomic(svg, |w| w.write_all(doc.as_bytes()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(())
}

fn compare(a: &HourglassArgs) -> Result<()> {
    let mut sets = Vec::with_capacity(a.compare.len());
    for path in &a.compare {
        let table = SidTable::read(path)?;
        let report = HourglassReport::measure(&table, a.head_share);
        let mse = sidx::quantize::QuantizerMeta::beside(path).map(|m| m.mse);
        sets.push(Compared {
            name: path.display().to_string(),
            method: table.header().method.clone(),
            mse,
            report,
        });
    }
    if let Some(svg) = &a.svg {
        let doc = sidx::hourglass::compare::render(&sets);
        sidx::fsx::write_atomic(svg, |w| w.write_all(doc.as_bytes()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&sets)?);
    } else {
        print!("{}", sidx::hourglass::compare::table(&sets));
    }
    Ok(())
}

pub fn mitigate(a: &MitigateArgs) -> Result<()> {
    let strategy = match a.strategy {
        StrategyArg::DropLayer2 => Strategy::DropLayer2,
        StrategyArg::TopK => Strategy::TopK(a.k.context("--k is required")?),
        StrategyArg::TopP => Strategy::TopP(a.p.context("--p is required")?),
    };
    let (before, after) = pipeline::mitigate_file(
        &a.sids,
        &a.out,
        strategy,
        a.collisions.map(Into::into),
        a.head_share,
    )?;
    println!("before:\n{}", before.summary());
    println!("after {strategy}:\n{}", after.summary());
    println!("wrote {}", a.out.display());
    Ok(())
}
