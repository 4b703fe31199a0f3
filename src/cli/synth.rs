//! `sidx synth`: a synthetic long-tailed catalog on disk.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use sidx::synth::SynthConfig;

#[derive(Args)]
pub struct SynthArgs {
    /// Number of items.
    #[arg(long, default_value_t = 20_000)]
    items: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 512)]
    clusters: usize,
    /// Zipf exponent of cluster sizes.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Log-normal σ of the jitter of residual sizes.
    #[arg(long, default_value_t = 0.3)]
    tail: f64,
    /// Share of items whose residual is an outlier.
    #[arg(long, default_value_t = 0.1)]
    outlier_share: f64,
    /// How much larger outlier residuals are than the others.
    #[arg(long, default_value_t = 8.0)]
    outlier_scale: f64,
    /// Directions outlier residuals lie along.
    #[arg(long, default_value_t = 256)]
    outlier_modes: usize,
    /// Median residual size relative to the spread of cluster centres.
    #[arg(long, default_value_t = 0.1)]
    residual_scale: f64,
    /// Seed (same seed, same catalog).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output .npy file; ids go to the same path with extension .ids.txt.
    #[arg(long)]
    out: PathBuf,
}

impl SynthArgs {
    fn config(&self) -> SynthConfig {
        SynthConfig {
            items: self.items,
            dim: self.dim,
            clusters: self.clusters,
            zipf: self.zipf,
            tail: self.tail,
            outlier_share: self.outlier_share,
            outlier_scale: self.outlier_scale,
            outlier_modes: self.outlier_modes,
            residual_scale: self.residual_scale,
            seed: self.seed,
        }
    }
}

pub fn run(a: &SynthArgs) -> Result<()> {
    let cfg = a.config();
    let x = sidx::synth::generate(&cfg);
    let ids_path = a.out.with_extension("ids.txt");
    let ids = sidx::synth::ids(cfg.items).join("\n") + "\n";
    let mut staging = sidx::fsx::Staging::new();
    staging.write(&a.out, |w| {
        sidx::npy::write_to(w, &[cfg.items, cfg.dim], &x)
    })?;
    staging.write(&ids_path, |w| w.write_all(ids.as_bytes()))?;
    staging.commit()?;
    println!(
        "wrote {} ({} × {}) and {}",
        a.out.display(),
        cfg.items,
        cfg.dim,
        ids_path.display()
    );
    Ok(())
}
