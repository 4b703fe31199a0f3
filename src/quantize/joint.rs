//! rq-joint: residual codebooks trained for beam-search encoding and refit
//! jointly, after faiss's `ResidualQuantizer`.
//!
//! Layers are added one at a time, as in rq-kmeans, but the residuals layer
//! `l` trains on are those left by a beam-search encoding (`beam` partial
//! codes per row) with layers `< l`, not by greedy nearest centroids. Once all
//! layers exist, each round refits every codebook to the codes the beam search
//! chose and encodes again:
//!
//! * **refit**: codebook `l`, the others fixed, is the least-squares solution
//!   `c_l[j] = mean over rows coded j at layer l of (x − Σ_{m≠l} c_m[code_m])`;
//!   sweeping the layers is block-coordinate descent on the joint
//!   least-squares problem (faiss solves it in one system);
//! * **re-encode**: beam search with the refit codebooks.
//!
//! A refit never raises the error of the codes it fits, but the beam search
//! that follows may find worse codes (it is approximate): rounds stop when
//! one does not gain more than the k-means tolerance, and the codebooks of
//! least beam-search error are kept. faiss refits codebooks only with
//! `Train_refine_codebook`, in one least-squares system. Cost: rq-kmeans' k-means, plus `layers + rounds` beam encodings of
//! the sample and `rounds × SWEEPS` passes of sums.

use rayon::prelude::*;

use super::QuantizeError;
use super::codebook::Codebook;
use super::kmeans::cluster_means;
use super::rq::{ResidualQuantizer, TrainConfig, layer_kmeans};
use crate::progress::Progress;

/// Refit-and-encode rounds after the last layer is added, at most.
pub const REFINE_ROUNDS: usize = 4;
/// Layer sweeps of block-coordinate refits per round.
const SWEEPS: usize = 2;

/// Trains `cfg.layers` codebooks on `sample` for beam-`cfg.beam` encoding.
pub fn train(
    sample: &[f32],
    dim: usize,
    cfg: &TrainConfig,
    progress: &Progress,
) -> Result<ResidualQuantizer, QuantizeError> {
    let mut codebooks: Vec<Codebook> = Vec::with_capacity(cfg.layers);
    let mut residual = sample.to_vec();
    let mut codes = Vec::new();
    for layer in 0..cfg.layers {
        progress.note(&format!(
            "rq-joint: layer {}/{} on beam-{} residuals",
            layer + 1,
            cfg.layers,
            cfg.beam
        ));
        let fit = layer_kmeans(cfg, layer).fit(&residual, dim, progress)?;
        codebooks.push(fit.codebook);
        let partial = ResidualQuantizer::new(codebooks.clone())?;
        codes = partial.encode(sample, cfg.beam, &Progress::hidden()).codes;
        residual = residuals(&partial, sample, &codes);
    }
    let mut best = ResidualQuantizer::new(codebooks)?;
    let mut best_error = mean_sq(&residual, dim);
    for round in 0..REFINE_ROUNDS {
        let mut codebooks = best.codebooks().to_vec();
        for _ in 0..SWEEPS {
            for l in 0..codebooks.len() {
                refit_layer(&mut codebooks, l, &mut residual, &codes);
            }
        }
        let refit = ResidualQuantizer::new(codebooks)?;
        let next_codes = refit.encode(sample, cfg.beam, &Progress::hidden()).codes;
        let next_residual = residuals(&refit, sample, &next_codes);
        let error = mean_sq(&next_residual, dim);
        progress.note(&format!(
            "rq-joint: refit round {}: training MSE {best_error:.5} → {error:.5}",
            round + 1
        ));
        let gain = best_error - error;
        if gain <= 0.0 {
            break;
        }
        (best, best_error, codes, residual) = (refit, error, next_codes, next_residual);
        if gain <= cfg.kmeans_tol * error {
            break;
        }
    }
    Ok(best)
}

/// Least-squares refit of codebook `l` with the others fixed; `residual`
/// (`x − x̂` of every row under `codes`) is kept up to date.
fn refit_layer(codebooks: &mut [Codebook], l: usize, residual: &mut [f32], codes: &[u32]) {
    let layers = codebooks.len();
    let (dim, k) = (codebooks[l].dim(), codebooks[l].k());
    let old = &codebooks[l];
    // What layer l should reconstruct: residual + c_l[code], per row.
    let layer_codes: Vec<u32> = codes.chunks_exact(layers).map(|c| c[l]).collect();
    let mut target = residual.to_vec();
    target
        .par_chunks_mut(dim)
        .zip(&layer_codes)
        .for_each(|(t, &j)| {
            t.iter_mut()
                .zip(old.centroid(j as usize))
                .for_each(|(v, &c)| *v += c)
        });
    let (mut centroids, counts) = cluster_means(&target, dim, k, &layer_codes);
    drop(target);
    // A code no row took keeps its centroid.
    for j in (0..k).filter(|&j| counts[j] == 0) {
        centroids[j * dim..(j + 1) * dim].copy_from_slice(old.centroid(j));
    }
    let new = Codebook::new(centroids, dim);
    residual
        .par_chunks_mut(dim)
        .zip(codes.par_chunks(layers))
        .for_each(|(r, c)| {
            let j = c[l] as usize;
            for ((v, &o), &n) in r.iter_mut().zip(old.centroid(j)).zip(new.centroid(j)) {
                *v += o - n;
            }
        });
    codebooks[l] = new;
}

/// `x − x̂` of every row of `x` under `codes`.
fn residuals(rq: &ResidualQuantizer, x: &[f32], codes: &[u32]) -> Vec<f32> {
    let mut r = x.to_vec();
    rq.subtract_reconstruction(&mut r, codes);
    r
}

/// Mean squared norm of the rows, summed over fixed chunks in order (the
/// same whatever the thread count: rounds stop on its value).
fn mean_sq(residual: &[f32], dim: usize) -> f64 {
    let n = (residual.len() / dim).max(1);
    let partials: Vec<f64> = residual
        .par_chunks(4096 * dim)
        .map(|c| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
        .collect();
    partials.iter().sum::<f64>() / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::{Init, Method};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn data(n: usize, d: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Each layer's refit is the least-squares optimum for fixed codes: the
    /// error never rises, and a second refit of the same layer changes nothing.
    #[test]
    fn a_refit_never_raises_the_error_and_is_a_fixed_point() {
        let (n, d) = (800, 6);
        let x = data(n, d);
        let cfg = TrainConfig {
            layers: 3,
            codebook_size: 8,
            train_sample: None,
            kmeans_iters: 5,
            kmeans_tol: 0.0,
            kmeans_init: Init::Random,
            ..TrainConfig::default()
        };
        let rq = ResidualQuantizer::train(&x, d, &cfg, &Progress::hidden()).unwrap();
        let codes = rq.encode(&x, 4, &Progress::hidden()).codes;
        let mut residual = residuals(&rq, &x, &codes);
        let mut books = rq.codebooks().to_vec();
        let mut last = mean_sq(&residual, d);
        for l in [0, 1, 2, 0] {
            refit_layer(&mut books, l, &mut residual, &codes);
            let now = mean_sq(&residual, d);
            assert!(now <= last + 1e-6, "layer {l}: {now} > {last}");
            last = now;
        }
        // `residual` was kept in step with the codebooks.
        let direct = residuals(&ResidualQuantizer::new(books.clone()).unwrap(), &x, &codes);
        assert!((mean_sq(&direct, d) - last).abs() < 1e-5);
        let before = books[1].clone();
        refit_layer(&mut books, 1, &mut residual, &codes);
        refit_layer(&mut books, 1, &mut residual, &codes);
        let moved = before
            .centroids()
            .iter()
            .zip(books[1].centroids())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(moved < 0.1, "a refit is not a fixed point: moved {moved}");
    }

    /// Trained for the beam it is encoded with, rq-joint reconstructs
    /// better than rq-kmeans' codebooks under the same beam search.
    #[test]
    fn joint_training_beats_sequential_codebooks_at_the_same_beam() {
        let (n, d) = (3000, 8);
        let x = data(n, d);
        let p = Progress::hidden();
        let base = TrainConfig {
            layers: 3,
            codebook_size: 16,
            train_sample: None,
            beam: 4,
            ..TrainConfig::default()
        };
        let joint = TrainConfig {
            method: Method::RqJoint,
            ..base.clone()
        };
        let seq = ResidualQuantizer::train(&x, d, &base, &p).unwrap();
        let joint = ResidualQuantizer::train(&x, d, &joint, &p).unwrap();
        let (a, b) = (joint.encode(&x, 4, &p).mse(), seq.encode(&x, 4, &p).mse());
        assert!(a < 0.98 * b, "rq-joint {a} vs rq-kmeans {b}");
        let again = TrainConfig {
            method: Method::RqJoint,
            ..base
        };
        assert_eq!(
            ResidualQuantizer::train(&x, d, &again, &p).unwrap(),
            joint,
            "deterministic"
        );
    }
}
