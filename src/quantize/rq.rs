//! Residual quantization: layer `l` quantizes what layers `< l` left over.
//! Training runs k-means per layer on the residuals of a sample; encoding is
//! greedy (beam 1) or a beam search over partial codes, as faiss's
//! `ResidualQuantizer` does; `rq-balanced` trains balanced k-means per layer
//! and encodes a catalog with the balanced assignment; `rq-joint` trains for
//! beam encoding and refits all layers together (`joint`).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::balanced::{assign_balanced, balanced_lloyd};
use super::codebook::{BLOCK_ROWS, Codebook, sq_dist, sq_norm};
use super::kmeans::{Init, KMeans};
use super::{Method, QuantizeError, joint};
use crate::progress::Progress;

/// Lloyd iterations stop once one lowers the error by less than 0.01%: on
/// 100k × 128 at k = 256 that is after ~18 of 25, at 0.05% higher cost.
pub const DEFAULT_KMEANS_TOL: f64 = 1e-4;

/// How to train a residual quantizer.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub layers: usize,
    pub codebook_size: usize,
    /// Train on a random sample of this many rows (all rows when `None` or larger than N).
    pub train_sample: Option<usize>,
    pub seed: u64,
    /// Beam width used to compute the residuals each next layer trains on.
    pub beam: usize,
    pub kmeans_iters: usize,
    /// Relative gain below which Lloyd iterations stop early ([`KMeans::tolerance`]).
    pub kmeans_tol: f64,
    pub kmeans_init: Init,
    pub method: Method,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            layers: 3,
            codebook_size: 256,
            train_sample: Some(100_000),
            seed: 42,
            beam: 1,
            kmeans_iters: 25,
            kmeans_tol: DEFAULT_KMEANS_TOL,
            kmeans_init: Init::KMeansParallel,
            method: Method::RqKmeans,
        }
    }
}

/// One codebook per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct ResidualQuantizer {
    codebooks: Vec<Codebook>,
}

/// Codes of every row (`codes[i * L + l]`) and the squared reconstruction error of each.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub codes: Vec<u32>,
    pub sq_errors: Vec<f32>,
}

impl Encoded {
    /// Mean squared reconstruction error per vector, `mean ‖x − x̂‖²`.
    pub fn mse(&self) -> f64 {
        let n = self.sq_errors.len().max(1);
        self.sq_errors.iter().map(|&e| e as f64).sum::<f64>() / n as f64
    }
}

impl ResidualQuantizer {
    /// A quantizer from trained codebooks (all of one dimension).
    pub fn new(codebooks: Vec<Codebook>) -> Result<Self, QuantizeError> {
        let dim = codebooks.first().map(Codebook::dim).ok_or_else(|| {
            QuantizeError::Config("a residual quantizer needs at least one layer".into())
        })?;
        if let Some(l) = codebooks.iter().position(|c| c.dim() != dim) {
            return Err(QuantizeError::Config(format!(
                "codebook of layer {} has dimension {}, layer 1 has {dim}",
                l + 1,
                codebooks[l].dim()
            )));
        }
        Ok(Self { codebooks })
    }

    /// Trains on the `n × dim` row-major `x`.
    pub fn train(
        x: &[f32],
        dim: usize,
        cfg: &TrainConfig,
        progress: &Progress,
    ) -> Result<Self, QuantizeError> {
        if cfg.layers == 0 || cfg.layers > 254 {
            return Err(QuantizeError::Config(format!(
                "--layers must be 1..=254, got {}",
                cfg.layers
            )));
        }
        if cfg.beam == 0 {
            return Err(QuantizeError::Config("--beam must be at least 1".into()));
        }
        if cfg.method == Method::RqBalanced && cfg.beam != 1 {
            return Err(QuantizeError::Config(
                "rq-balanced assigns each layer greedily: --beam must be 1".into(),
            ));
        }
        if !(0.0..1.0).contains(&cfg.kmeans_tol) {
            return Err(QuantizeError::Config(format!(
                "--kmeans-tol must be in [0, 1), got {}",
                cfg.kmeans_tol
            )));
        }
        let sample = sample_rows(x, dim, cfg.train_sample, cfg.seed);
        let balanced = match cfg.method {
            Method::RqJoint => return joint::train(&sample, dim, cfg, progress),
            Method::RqBalanced => true,
            Method::RqKmeans => false,
        };
        let mut residual = sample.clone();
        let mut codebooks = Vec::with_capacity(cfg.layers);
        for layer in 0..cfg.layers {
            progress.note(&format!(
                "training layer {}/{} ({} × {dim} residuals, k = {})",
                layer + 1,
                cfg.layers,
                residual.len() / dim,
                cfg.codebook_size
            ));
            let kmeans = layer_kmeans(cfg, layer);
            let (codebook, codes) = if balanced {
                // Balanced k-means starts from the seeds: plain Lloyd
                // iterations first would only be undone by the balance.
                let seeds = kmeans.seed_centroids(&residual, dim)?;
                balanced_lloyd(seeds, &residual, cfg.kmeans_iters, cfg.kmeans_tol)
            } else {
                let fit = kmeans.fit(&residual, dim, progress)?;
                (fit.codebook, fit.codes)
            };
            codebooks.push(codebook);
            if layer + 1 == cfg.layers {
                break;
            }
            if cfg.beam == 1 {
                let last = codebooks.last().expect("just pushed");
                residual
                    .par_chunks_mut(dim)
                    .zip(&codes)
                    .for_each(|(r, &c)| subtract(r, last.centroid(c as usize)));
            } else {
                let partial = Self::new(codebooks.clone())?;
                residual = partial.residuals(&sample, cfg.beam);
            }
        }
        Self::new(codebooks)
    }

    pub fn layers(&self) -> usize {
        self.codebooks.len()
    }

    pub fn dim(&self) -> usize {
        self.codebooks[0].dim()
    }

    /// Codes per layer: the layout of the SIDs these codebooks make.
    pub fn codebook_sizes(&self) -> Vec<u32> {
        self.codebooks.iter().map(|c| c.k() as u32).collect()
    }

    pub fn codebooks(&self) -> &[Codebook] {
        &self.codebooks
    }

    /// Encodes every row of `x` with beam width `beam` (1 = greedy), on all threads.
    pub fn encode(&self, x: &[f32], beam: usize, progress: &Progress) -> Encoded {
        let dim = self.dim();
        let layers = self.layers();
        let n = x.len() / dim;
        let mut codes = vec![0u32; n * layers];
        let mut sq_errors = vec![0f32; n];
        let bar = progress.bar(n as u64, "encoding");
        let beam = beam.max(1);
        let rows_per_task = (BLOCK_ROWS / beam).max(1);
        x.par_chunks(rows_per_task * dim)
            .zip(codes.par_chunks_mut(rows_per_task * layers))
            .zip(sq_errors.par_chunks_mut(rows_per_task))
            .for_each_init(BeamScratch::default, |scratch, ((xb, cb), eb)| {
                if beam == 1 {
                    self.encode_greedy_block(xb, cb, eb, scratch);
                } else {
                    self.encode_beam_block(xb, beam, cb, eb, scratch);
                }
                bar.inc(eb.len() as u64);
            });
        bar.finish_and_clear();
        Encoded { codes, sq_errors }
    }

    /// Encodes every row of `x` layer by layer with the balanced assignment
    /// ([`assign_balanced`]): each code of a layer receives `⌈n/M⌉` or
    /// `⌊n/M⌋` of the rows. A catalog-wide property: a single new item is
    /// encoded by [`Self::encode`].
    pub fn encode_balanced(&self, x: &[f32], progress: &Progress) -> Encoded {
        let dim = self.dim();
        let layers = self.layers();
        let n = x.len() / dim;
        let mut codes = vec![0u32; n * layers];
        let mut residual = x.to_vec();
        for (l, cb) in self.codebooks.iter().enumerate() {
            progress.note(&format!("balanced assignment, layer {}/{layers}", l + 1));
            let (layer_codes, _) = assign_balanced(cb, &residual);
            residual
                .par_chunks_mut(dim)
                .zip(&layer_codes)
                .for_each(|(r, &c)| subtract(r, cb.centroid(c as usize)));
            for (i, c) in layer_codes.into_iter().enumerate() {
                codes[i * layers + l] = c;
            }
        }
        let sq_errors = residual.par_chunks(dim).map(sq_norm).collect();
        Encoded { codes, sq_errors }
    }

    /// Encodes a catalog as `method` does: the balanced assignment for
    /// rq-balanced, else [`Self::encode`] with `beam`.
    pub fn encode_catalog(
        &self,
        method: Method,
        x: &[f32],
        beam: usize,
        progress: &Progress,
    ) -> Encoded {
        match method {
            Method::RqBalanced => self.encode_balanced(x, progress),
            Method::RqKmeans | Method::RqJoint => self.encode(x, beam, progress),
        }
    }

    /// `x − x̂` of every row after encoding with `beam`.
    pub fn residuals(&self, x: &[f32], beam: usize) -> Vec<f32> {
        let enc = self.encode(x, beam, &Progress::hidden());
        let mut r = x.to_vec();
        self.subtract_reconstruction(&mut r, &enc.codes);
        r
    }

    /// Reconstructs `x̂` from codes (`codes[i * L + l]`).
    pub fn decode(&self, codes: &[u32]) -> Vec<f32> {
        let mut out = vec![0f32; codes.len() / self.layers() * self.dim()];
        self.subtract_reconstruction(&mut out, codes);
        out.iter_mut().for_each(|v| *v = -*v);
        out
    }

    /// Subtracts the reconstruction under `codes` from every row.
    pub(super) fn subtract_reconstruction(&self, rows: &mut [f32], codes: &[u32]) {
        rows.par_chunks_mut(self.dim())
            .zip(codes.par_chunks(self.layers()))
            .for_each(|(r, cs)| {
                for (cb, &c) in self.codebooks.iter().zip(cs) {
                    subtract(r, cb.centroid(c as usize));
                }
            });
    }

    /// Greedy: per layer, the nearest centroid of the running residual.
    fn encode_greedy_block(
        &self,
        x: &[f32],
        codes: &mut [u32],
        sq_errors: &mut [f32],
        s: &mut BeamScratch,
    ) {
        let dim = self.dim();
        let layers = self.layers();
        let rows = sq_errors.len();
        s.residual.clear();
        s.residual.extend_from_slice(x);
        s.codes.resize(rows, 0);
        s.dists.resize(rows, 0.0);
        for (l, cb) in self.codebooks.iter().enumerate() {
            cb.assign_block(&s.residual, &mut s.codes, &mut s.dists, &mut s.dots);
            for (r, &c) in s.codes.iter().enumerate() {
                codes[r * layers + l] = c;
                subtract(
                    &mut s.residual[r * dim..(r + 1) * dim],
                    cb.centroid(c as usize),
                );
            }
        }
        for (e, r) in sq_errors.iter_mut().zip(s.residual.chunks_exact(dim)) {
            *e = sq_norm(r);
        }
    }

    /// Beam search: keep the `beam` partial codes of least error per row; extend
    /// each by every centroid of the next layer; keep the best `beam` again.
    fn encode_beam_block(
        &self,
        x: &[f32],
        beam: usize,
        codes: &mut [u32],
        sq_errors: &mut [f32],
        s: &mut BeamScratch,
    ) {
        let dim = self.dim();
        let layers = self.layers();
        let rows = sq_errors.len();
        // Hypotheses of row r live at r * width .. r * width + live.
        let mut live = 1;
        let mut width = 1;
        s.residual.clear();
        s.residual.extend_from_slice(x);
        s.errors.clear();
        s.errors.extend(x.chunks_exact(dim).map(sq_norm));
        s.hyp_codes.clear();
        s.hyp_codes.resize(rows * layers, 0);
        for (l, cb) in self.codebooks.iter().enumerate() {
            let k = cb.k();
            s.dots.resize(rows * width * k, 0.0);
            cb.dots(&s.residual, &mut s.dots);
            let next_live = (live * k).min(beam);
            s.next_residual.resize(rows * next_live * dim, 0.0);
            s.next_errors.resize(rows * next_live, 0.0);
            s.next_codes.resize(rows * next_live * layers, 0);
            for r in 0..rows {
                s.candidates.clear();
                for b in 0..live {
                    let h = r * width + b;
                    let dots = &s.dots[h * k..(h + 1) * k];
                    for (j, (&dot, &norm)) in dots.iter().zip(cb.norms()).enumerate() {
                        s.candidates
                            .push((s.errors[h] + norm - 2.0 * dot, b as u32, j as u32));
                    }
                }
                let by_score = |a: &(f32, u32, u32), b: &(f32, u32, u32)| {
                    a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2)))
                };
                if s.candidates.len() > next_live {
                    s.candidates.select_nth_unstable_by(next_live - 1, by_score);
                    s.candidates.truncate(next_live);
                }
                s.candidates.sort_unstable_by(by_score);
                for (slot, &(_, b, j)) in s.candidates.iter().enumerate() {
                    let from = r * width + b as usize;
                    let to = r * next_live + slot;
                    let src = &s.residual[from * dim..(from + 1) * dim];
                    let dst = &mut s.next_residual[to * dim..(to + 1) * dim];
                    for ((d, &v), &c) in dst.iter_mut().zip(src).zip(cb.centroid(j as usize)) {
                        *d = v - c;
                    }
                    s.next_errors[to] = sq_norm(dst);
                    let (src_codes, dst_codes) = (
                        &s.hyp_codes[from * layers..from * layers + l],
                        &mut s.next_codes[to * layers..(to + 1) * layers],
                    );
                    dst_codes[..l].copy_from_slice(src_codes);
                    dst_codes[l] = j;
                }
            }
            std::mem::swap(&mut s.residual, &mut s.next_residual);
            std::mem::swap(&mut s.errors, &mut s.next_errors);
            std::mem::swap(&mut s.hyp_codes, &mut s.next_codes);
            live = next_live;
            width = next_live;
        }
        for r in 0..rows {
            // Hypotheses are sorted by the score they were chosen with; pick by exact error.
            let best = (0..live)
                .min_by(|&a, &b| s.errors[r * width + a].total_cmp(&s.errors[r * width + b]))
                .expect("at least one hypothesis");
            let h = r * width + best;
            codes[r * layers..(r + 1) * layers]
                .copy_from_slice(&s.hyp_codes[h * layers..(h + 1) * layers]);
            sq_errors[r] = s.errors[h];
        }
    }
}

/// Buffers reused across the blocks one thread encodes.
#[derive(Default)]
struct BeamScratch {
    residual: Vec<f32>,
    next_residual: Vec<f32>,
    errors: Vec<f32>,
    next_errors: Vec<f32>,
    hyp_codes: Vec<u32>,
    next_codes: Vec<u32>,
    dots: Vec<f32>,
    codes: Vec<u32>,
    dists: Vec<f32>,
    candidates: Vec<(f32, u32, u32)>,
}

/// The k-means run that trains layer `layer` (0-based) under `cfg`.
pub(super) fn layer_kmeans(cfg: &TrainConfig, layer: usize) -> KMeans {
    KMeans {
        k: cfg.codebook_size,
        max_iters: cfg.kmeans_iters,
        tolerance: cfg.kmeans_tol,
        seed: cfg.seed.wrapping_add(layer as u64 + 1),
        init: cfg.kmeans_init,
    }
}

fn subtract(r: &mut [f32], c: &[f32]) {
    r.iter_mut().zip(c).for_each(|(v, &c)| *v -= c);
}

/// A random sample of `size` rows (in their original order), or all rows.
fn sample_rows(x: &[f32], dim: usize, size: Option<usize>, seed: u64) -> Vec<f32> {
    let n = x.len() / dim;
    match size {
        Some(s) if s < n => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut idx = rand::seq::index::sample(&mut rng, n, s).into_vec();
            idx.sort_unstable();
            idx.iter()
                .flat_map(|&i| &x[i * dim..(i + 1) * dim])
                .copied()
                .collect()
        }
        _ => x.to_vec(),
    }
}

/// Mean of `‖x − x̂‖²` computed directly (a check on `Encoded::mse`).
pub fn reconstruction_mse(x: &[f32], x_hat: &[f32], dim: usize) -> f64 {
    let n = (x.len() / dim).max(1);
    x.par_chunks(dim)
        .zip(x_hat.par_chunks(dim))
        .map(|(a, b)| sq_dist(a, b) as f64)
        .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn cfg(layers: usize, k: usize) -> TrainConfig {
        TrainConfig {
            layers,
            codebook_size: k,
            train_sample: None,
            seed: 5,
            beam: 1,
            kmeans_iters: 10,
            kmeans_tol: 0.0,
            kmeans_init: Init::KMeansPlusPlus,
            method: Method::RqKmeans,
        }
    }

    #[test]
    fn each_layer_lowers_the_error_and_errors_match_decode() {
        let (n, d) = (600, 8);
        let x = data(n, d, 1);
        let p = Progress::hidden();
        let mut last = f64::INFINITY;
        for layers in 1..=3 {
            let rq = ResidualQuantizer::train(&x, d, &cfg(layers, 16), &p).unwrap();
            let enc = rq.encode(&x, 1, &p);
            let direct = reconstruction_mse(&x, &rq.decode(&enc.codes), d);
            assert!((enc.mse() - direct).abs() < 1e-4 * direct.max(1.0));
            assert!(enc.mse() < last, "layer {layers}: {} !< {last}", enc.mse());
            last = enc.mse();
        }
    }

    #[test]
    fn beam_search_is_never_worse_than_greedy() {
        let (n, d) = (500, 6);
        let x = data(n, d, 2);
        let p = Progress::hidden();
        let rq = ResidualQuantizer::train(&x, d, &cfg(3, 8), &p).unwrap();
        let greedy = rq.encode(&x, 1, &p);
        let beam = rq.encode(&x, 8, &p);
        for i in 0..n {
            assert!(beam.sq_errors[i] <= greedy.sq_errors[i] + 1e-5, "row {i}");
        }
        assert!(beam.mse() < greedy.mse());
        // Exhaustive search over all 8³ codes is the bound beam 512 must reach.
        let full = rq.encode(&x[..20 * d], 512, &p);
        for i in 0..20 {
            let row = &x[i * d..(i + 1) * d];
            let mut best = f32::INFINITY;
            for a in 0..8u32 {
                for b in 0..8u32 {
                    for c in 0..8u32 {
                        let xh = rq.decode(&[a, b, c]);
                        best = best.min(sq_dist(row, &xh));
                    }
                }
            }
            assert!((full.sq_errors[i] - best).abs() < 1e-4, "row {i}");
        }
    }

    #[test]
    fn training_is_deterministic_and_beam_training_works() {
        let x = data(400, 4, 3);
        let p = Progress::hidden();
        let mut c = cfg(2, 8);
        c.train_sample = Some(200);
        let a = ResidualQuantizer::train(&x, 4, &c, &p).unwrap();
        let b = ResidualQuantizer::train(&x, 4, &c, &p).unwrap();
        assert_eq!(a, b);
        c.beam = 4;
        let beam = ResidualQuantizer::train(&x, 4, &c, &p).unwrap();
        assert_eq!(beam.layers(), 2);
    }
}
