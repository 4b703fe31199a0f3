//! A deterministic synthetic catalog with the long tail of real ones: a
//! Gaussian mixture whose cluster sizes follow a Zipf law, plus residuals whose
//! scale is heavy-tailed — many tiny offsets, a few large outliers — which is
//! what makes residual-quantized SIDs hourglass-shaped.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, StandardNormal};
use rayon::prelude::*;

/// Shape of the synthetic catalog.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub items: usize,
    pub dim: usize,
    pub clusters: usize,
    /// Zipf exponent of cluster sizes (0 = equal sizes).
    pub zipf: f64,
    /// σ of the log-normal jitter of residual sizes (0 = equal within a group).
    pub tail: f64,
    /// Share of items whose residual is an outlier.
    pub outlier_share: f64,
    /// How much larger outlier residuals are.
    pub outlier_scale: f64,
    /// Directions outliers lie along (outliers are structured, not noise).
    pub outlier_modes: usize,
    /// Median residual norm relative to the spread of cluster centres.
    pub residual_scale: f64,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            items: 20_000,
            dim: 64,
            clusters: 512,
            zipf: 1.0,
            tail: 0.3,
            outlier_share: 0.1,
            outlier_scale: 8.0,
            outlier_modes: 256,
            residual_scale: 0.1,
            seed: 42,
        }
    }
}

/// Items generated per RNG stream (fixed, so output is independent of threads).
const CHUNK: usize = 1024;

/// Row-major `items × dim` float32 embeddings.
pub fn generate(cfg: &SynthConfig) -> Vec<f32> {
    let (d, c) = (cfg.dim, cfg.clusters.max(1));
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let centers: Vec<f32> = (0..c * d)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    let mut cumulative = Vec::with_capacity(c);
    let mut total = 0.0;
    for k in 0..c {
        total += 1.0 / ((k + 1) as f64).powf(cfg.zipf);
        cumulative.push(total);
    }
    let modes = cfg.outlier_modes.max(1);
    let directions: Vec<f32> = (0..modes * d)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    let scale = LogNormal::new(0.0, cfg.tail.max(0.0)).expect("σ ≥ 0");
    // Centres are N(0, I): their norm is ≈ √d; a residual with per-coordinate σ = r·s
    // has norm ≈ r·s·√d, so `residual_scale` is the median ratio of the two.
    let r = cfg.residual_scale as f32;
    let mut out = vec![0f32; cfg.items * d];
    out.par_chunks_mut(CHUNK * d)
        .enumerate()
        .for_each(|(chunk, rows)| {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            rng.set_stream(chunk as u64 + 1);
            for row in rows.chunks_exact_mut(d) {
                let u = rng.random::<f64>() * total;
                let k = cumulative.partition_point(|&x| x < u).min(c - 1);
                let s = r * scale.sample(&mut rng) as f32;
                for (v, &m) in row.iter_mut().zip(&centers[k * d..(k + 1) * d]) {
                    *v = m + s * rng.sample::<f32, _>(StandardNormal);
                }
                if rng.random::<f64>() < cfg.outlier_share {
                    let mode = rng.random_range(0..modes);
                    let big = s * cfg.outlier_scale as f32;
                    for (v, &u) in row.iter_mut().zip(&directions[mode * d..(mode + 1) * d]) {
                        *v += big * u;
                    }
                }
            }
        });
    out
}

/// Item ids `item-0`, `item-1`, … for a synthetic catalog.
pub fn ids(items: usize) -> Vec<String> {
    (0..items).map(|i| format!("item-{i}")).collect()
}

/// Synthetic long-tailed SIDs for index benchmarks, as sorted packed keys:
/// up to four big-endian `u16` token ids in a `u64`, zero-padded (a real
/// token past the first is never 0), layer-tagged for a `3 × m` layout.
/// Layer 1 follows Zipf(0.8), layer 2 Zipf(1.2) (the hourglass waist), layer
/// 3 is uniform; with `drop_top_k`, items behind the K most frequent layer-2
/// codes lose their layer-2 token (the paper's variable-length SIDs).
/// Shared SIDs get a disambiguation token, so keys are unique.
pub fn long_tailed_sids(n: usize, m: u16, drop_top_k: Option<usize>, seed: u64) -> Vec<u64> {
    let m32 = m as u32;
    assert!(
        3 * m32 + 1 < u16::MAX as u32,
        "3 × m token ids must fit u16"
    );
    let zipf = |s: f64| {
        let mut cum = Vec::with_capacity(m as usize);
        let mut t = 0.0;
        for k in 0..m as usize {
            t += 1.0 / ((k + 1) as f64).powf(s);
            cum.push(t);
        }
        cum
    };
    let (z1, z2) = (zipf(0.8), zipf(1.2));
    // Layer-2 codes are ranked by frequency in code order, so the top K are codes 0..K.
    let dropped = drop_top_k.unwrap_or(0) as u32;
    let mut keys: Vec<u64> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .flat_map_iter(|chunk| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(chunk as u64 + 1);
            let rows = CHUNK.min(n - chunk * CHUNK);
            let draw = |rng: &mut ChaCha8Rng, cum: &[f64]| {
                let u = rng.random::<f64>() * cum[cum.len() - 1];
                cum.partition_point(|&x| x < u).min(cum.len() - 1) as u32
            };
            (0..rows)
                .map(|_| {
                    let a = draw(&mut rng, &z1);
                    let b = draw(&mut rng, &z2);
                    let c = rng.random_range(0..m32);
                    let t3 = (2 * m32 + c) as u64;
                    if b < dropped {
                        (a as u64) << 48 | t3 << 32
                    } else {
                        (a as u64) << 48 | ((m32 + b) as u64) << 32 | t3 << 16
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    keys.par_sort_unstable();
    // Disambiguate runs of equal keys with a token after the last one.
    let dis = 3 * m32;
    let mut i = 0;
    while i < keys.len() {
        let mut j = i + 1;
        while j < keys.len() && keys[j] == keys[i] {
            j += 1;
        }
        if j - i > 1 {
            let len = key_len(keys[i]);
            for (code, k) in keys[i..j].iter_mut().enumerate() {
                let code = (dis + code as u32).min(u16::MAX as u32) as u64;
                *k |= code << (48 - 16 * len);
            }
        }
        i = j;
    }
    keys.par_sort_unstable();
    keys.dedup();
    keys
}

/// Tokens in a packed key (1 to 4).
pub fn key_len(key: u64) -> usize {
    (1..4)
        .find(|&i| (key >> (48 - 16 * i)) & 0xffff == 0)
        .unwrap_or(4)
}

/// The token ids of a packed key.
pub fn key_tokens(key: u64, out: &mut Vec<u16>) {
    out.clear();
    out.extend((0..key_len(key)).map(|i| (key >> (48 - 16 * i)) as u16));
}

/// Builds and publishes an index of packed keys (`long_tailed_sids`) for a
/// `3 × m` layout; item `i` is named by its decimal position.
pub fn build_index(
    store: &crate::index::IndexStore,
    keys: &[u64],
    m: u16,
    source: &str,
) -> Result<crate::index::BuildSummary, crate::index::IndexError> {
    use crate::index::{Manifest, build_sorted};
    use crate::sid::{CollisionMode, Layout};
    let layout = Layout::new(vec![m as u32; 3])?;
    let mut template = Manifest::new(&layout, CollisionMode::Disambiguate);
    template.source = source.to_owned();
    build_sorted(store, template, |builder| {
        let mut tokens = Vec::with_capacity(4);
        let mut id = String::new();
        for (i, &k) in keys.iter().enumerate() {
            key_tokens(k, &mut tokens);
            id.clear();
            std::fmt::Write::write_fmt(&mut id, format_args!("{i}")).expect("to a String");
            builder.push(&tokens, &id)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let cfg = SynthConfig {
            items: 3000,
            dim: 16,
            clusters: 20,
            ..SynthConfig::default()
        };
        let a = generate(&cfg);
        assert_eq!(a, generate(&cfg));
        assert_eq!(a.len(), 3000 * 16);
        assert!(a.iter().all(|v| v.is_finite()));
        let other = generate(&SynthConfig { seed: 7, ..cfg });
        assert_ne!(a, other);
    }

    #[test]
    fn long_tailed_sids_are_sorted_unique_and_variable() {
        let keys = long_tailed_sids(20_000, 64, Some(8), 1);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert!(keys.len() == 20_000, "disambiguation keeps every item");
        let mut t = Vec::new();
        let (mut two, mut four) = (0, 0);
        for &k in &keys {
            key_tokens(k, &mut t);
            assert!(t[0] < 64 && t[1] >= 64, "layer-tagged: {t:?}");
            two += usize::from(t.len() == 2);
            four += usize::from(t.len() == 4 || (t.len() == 3 && t[2] >= 192));
        }
        assert!(two > 0, "some items lost their layer-2 token");
        assert!(four > 0, "shared SIDs got a disambiguation token");
    }
}
