//! A codebook of centroids and its vectorised nearest-centroid search:
//! `argmin_j ‖x‖² − 2 x·c_j + ‖c_j‖²`, the `x·c` block computed as one GEMM
//! per block of rows, blocks spread over threads.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// Rows per GEMM block: large enough to amortise packing the codebook,
/// small enough that the `rows × k` dot block stays in cache.
pub(crate) const BLOCK_ROWS: usize = 256;

/// `k` centroids of dimension `dim`, row-major, with their squared norms.
#[derive(Clone, Debug, PartialEq)]
pub struct Codebook {
    dim: usize,
    centroids: Vec<f32>,
    norms: Vec<f32>,
}

impl Codebook {
    /// A codebook from row-major centroids (`centroids.len()` a multiple of `dim`).
    pub fn new(centroids: Vec<f32>, dim: usize) -> Self {
        assert!(
            dim > 0 && centroids.len().is_multiple_of(dim),
            "centroids must be k × dim"
        );
        let norms = centroids.chunks_exact(dim).map(sq_norm).collect();
        Self {
            dim,
            centroids,
            norms,
        }
    }

    pub fn k(&self) -> usize {
        self.norms.len()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn centroid(&self, j: usize) -> &[f32] {
        &self.centroids[j * self.dim..(j + 1) * self.dim]
    }

    /// All centroids, row-major `k × dim`.
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// Squared norm `‖c_j‖²` of every centroid.
    pub fn norms(&self) -> &[f32] {
        &self.norms
    }

    /// `out[r * k + j] = x_r · c_j` for the `rows` rows of `x` (single-threaded).
    pub fn dots(&self, x: &[f32], out: &mut [f32]) {
        let rows = x.len() / self.dim;
        let k = self.k();
        let a = ArrayView2::from_shape((rows, self.dim), x).expect("x is rows × dim");
        let b = ArrayView2::from_shape((k, self.dim), &self.centroids).expect("k × dim");
        let mut c = ArrayViewMut2::from_shape((rows, k), &mut out[..rows * k]).expect("rows × k");
        general_mat_mul(1.0, &a, &b.t(), 0.0, &mut c);
    }

    /// Nearest centroid and squared distance of each row of `x`, single-threaded;
    /// `scratch` is reused between calls.
    pub fn assign_block(
        &self,
        x: &[f32],
        codes: &mut [u32],
        dists: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let k = self.k();
        for ((xb, cb), db) in x
            .chunks(BLOCK_ROWS * self.dim)
            .zip(codes.chunks_mut(BLOCK_ROWS))
            .zip(dists.chunks_mut(BLOCK_ROWS))
        {
            let rows = cb.len();
            scratch.resize(rows * k, 0.0);
            self.dots(xb, scratch);
            for (r, (code, dist)) in cb.iter_mut().zip(db.iter_mut()).enumerate() {
                let (j, partial) = argmin_partial(&scratch[r * k..(r + 1) * k], &self.norms);
                *code = j as u32;
                // ‖x − c‖² = ‖x‖² + (‖c‖² − 2x·c); clamp the rounding below zero.
                *dist = (sq_norm(&xb[r * self.dim..(r + 1) * self.dim]) + partial).max(0.0);
            }
        }
    }

    /// Nearest centroid and squared distance of each row of `x`, on all threads.
    pub fn assign(&self, x: &[f32]) -> (Vec<u32>, Vec<f32>) {
        let n = x.len() / self.dim;
        let mut codes = vec![0u32; n];
        let mut dists = vec![0f32; n];
        x.par_chunks(BLOCK_ROWS * self.dim)
            .zip(codes.par_chunks_mut(BLOCK_ROWS))
            .zip(dists.par_chunks_mut(BLOCK_ROWS))
            .for_each_init(Vec::new, |scratch, ((xb, cb), db)| {
                self.assign_block(xb, cb, db, scratch)
            });
        (codes, dists)
    }
}

/// `argmin_j norms[j] − 2 dots[j]`, first index on ties.
fn argmin_partial(dots: &[f32], norms: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (j, (&dot, &norm)) in dots.iter().zip(norms).enumerate() {
        let v = norm - 2.0 * dot;
        if v < best.1 {
            best = (j, v);
        }
    }
    best
}

/// `‖v‖²`.
pub fn sq_norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum()
}

/// `‖a − b‖²`.
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn gemm_assignment_matches_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (n, k, d) = (1000, 37, 13);
        let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let c: Vec<f32> = (0..k * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let cb = Codebook::new(c, d);
        let (codes, dists) = cb.assign(&x);
        for i in 0..n {
            let row = &x[i * d..(i + 1) * d];
            let (bj, bd) = (0..k)
                .map(|j| (j, sq_dist(row, cb.centroid(j))))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let got = sq_dist(row, cb.centroid(codes[i] as usize));
            assert!(
                codes[i] as usize == bj || (got - bd).abs() < 1e-5,
                "row {i}: got {} ({got}), want {bj} ({bd})",
                codes[i]
            );
            assert!(
                (dists[i] - bd).abs() < 1e-4,
                "row {i}: {} vs {bd}",
                dists[i]
            );
        }
    }
}
