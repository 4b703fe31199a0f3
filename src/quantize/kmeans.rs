//! k-means: k-means++ seeding, Lloyd iterations with GEMM assignment, and
//! empty-cluster repair. Deterministic for a seed whatever the thread count:
//! every reduction runs over fixed chunks combined in order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::QuantizeError;
use super::codebook::{Codebook, sq_dist};
use crate::progress::Progress;

/// How the first centroids are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Init {
    /// k-means++: each next centroid drawn with probability ∝ squared distance.
    #[default]
    KMeansPlusPlus,
    /// `k` distinct random points (as faiss does).
    Random,
}

/// Lloyd iterations and seeding of one k-means run.
#[derive(Clone, Debug)]
pub struct KMeans {
    pub k: usize,
    /// Upper bound on Lloyd iterations; stops earlier once no assignment changes.
    pub max_iters: usize,
    pub seed: u64,
    pub init: Init,
}

/// A trained codebook and how the training data ended up assigned.
pub struct Fit {
    pub codebook: Codebook,
    pub codes: Vec<u32>,
    /// Squared distance of each point to its centroid.
    pub dists: Vec<f32>,
    pub iterations: usize,
}

/// Number of fixed chunks that partial sums are taken over.
const REDUCE_CHUNKS: usize = 16;

impl KMeans {
    /// Clusters the `n × dim` row-major `x`.
    pub fn fit(&self, x: &[f32], dim: usize, progress: &Progress) -> Result<Fit, QuantizeError> {
        let n = x.len() / dim;
        if self.k == 0 {
            return Err(QuantizeError::Config(
                "codebook size must be at least 1".into(),
            ));
        }
        if self.k > n {
            return Err(QuantizeError::Config(format!(
                "codebook size {} exceeds the {n} training vectors; lower --codebook-size or raise --train-sample",
                self.k
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let init = match self.init {
            Init::KMeansPlusPlus => kmeans_plus_plus(x, dim, self.k, &mut rng),
            Init::Random => rand::seq::index::sample(&mut rng, n, self.k)
                .iter()
                .flat_map(|i| &x[i * dim..(i + 1) * dim])
                .copied()
                .collect(),
        };
        let mut codebook = Codebook::new(init, dim);
        let bar = progress.bar(self.max_iters as u64, "k-means");
        let (mut codes, mut dists) = codebook.assign(x);
        let mut iterations = 0;
        for _ in 0..self.max_iters {
            iterations += 1;
            let centroids = update_centroids(x, dim, self.k, &codes, &dists);
            codebook = Codebook::new(centroids, dim);
            let (new_codes, new_dists) = codebook.assign(x);
            let changed = new_codes.iter().zip(&codes).filter(|(a, b)| a != b).count();
            codes = new_codes;
            dists = new_dists;
            bar.inc(1);
            if changed == 0 {
                break;
            }
        }
        bar.finish_and_clear();
        Ok(Fit {
            codebook,
            codes,
            dists,
            iterations,
        })
    }
}

/// k-means++ seeding: each next centroid is a point drawn with probability
/// proportional to its squared distance to the nearest centroid so far.
fn kmeans_plus_plus(x: &[f32], dim: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = x.len() / dim;
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    centroids.extend_from_slice(row(first));
    let mut d2: Vec<f32> = x.par_chunks(dim).map(|p| sq_dist(p, row(first))).collect();
    for _ in 1..k {
        let total: f64 = d2.iter().map(|&v| v as f64).sum();
        let next = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &v) in d2.iter().enumerate() {
                target -= v as f64;
                if target < 0.0 && v > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            // Every point coincides with a centroid: duplicates are unavoidable.
            rng.random_range(0..n)
        };
        let c = row(next);
        centroids.extend_from_slice(c);
        d2.par_iter_mut()
            .zip(x.par_chunks(dim))
            .for_each(|(d, p)| *d = d.min(sq_dist(p, c)));
    }
    centroids
}

/// Means of the assigned points; an empty cluster takes the point worst served
/// by its current centroid (each such point used once).
fn update_centroids(x: &[f32], dim: usize, k: usize, codes: &[u32], dists: &[f32]) -> Vec<f32> {
    let n = codes.len();
    let chunk = n.div_ceil(REDUCE_CHUNKS).max(1);
    let partials: Vec<(Vec<f64>, Vec<u64>)> = x
        .par_chunks(chunk * dim)
        .zip(codes.par_chunks(chunk))
        .map(|(xs, cs)| {
            let mut sums = vec![0f64; k * dim];
            let mut counts = vec![0u64; k];
            for (p, &c) in xs.chunks_exact(dim).zip(cs) {
                let c = c as usize;
                counts[c] += 1;
                for (s, &v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(p) {
                    *s += v as f64;
                }
            }
            (sums, counts)
        })
        .collect();
    let mut sums = vec![0f64; k * dim];
    let mut counts = vec![0u64; k];
    for (s, c) in partials {
        sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
        counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
    }
    let mut centroids = vec![0f32; k * dim];
    let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0).collect();
    for j in (0..k).filter(|&j| counts[j] > 0) {
        let inv = 1.0 / counts[j] as f64;
        for (c, s) in centroids[j * dim..(j + 1) * dim]
            .iter_mut()
            .zip(&sums[j * dim..(j + 1) * dim])
        {
            *c = (s * inv) as f32;
        }
    }
    if !empty.is_empty() {
        let mut worst: Vec<usize> = (0..n).collect();
        worst.sort_unstable_by(|&a, &b| dists[b].total_cmp(&dists[a]).then(a.cmp(&b)));
        for (&j, &p) in empty.iter().zip(&worst) {
            centroids[j * dim..(j + 1) * dim].copy_from_slice(&x[p * dim..(p + 1) * dim]);
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs() -> (Vec<f32>, usize) {
        // Three tight 2-d blobs of 50 points around (0,0), (10,0), (0,10).
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let centers = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)];
        let mut x = Vec::new();
        for (cx, cy) in centers {
            for _ in 0..50 {
                x.push(cx + rng.random_range(-0.5..0.5));
                x.push(cy + rng.random_range(-0.5..0.5));
            }
        }
        (x, 2)
    }

    #[test]
    fn finds_separated_blobs_and_is_deterministic() {
        let (x, d) = blobs();
        let km = KMeans {
            k: 3,
            max_iters: 25,
            seed: 3,
            init: Init::KMeansPlusPlus,
        };
        let a = km.fit(&x, d, &Progress::hidden()).unwrap();
        let b = km.fit(&x, d, &Progress::hidden()).unwrap();
        assert_eq!(a.codebook, b.codebook, "same seed, same codebook");
        // Each blob maps to a single cluster, distinct across blobs.
        let labels: Vec<u32> = (0..3).map(|b| a.codes[b * 50]).collect();
        for (blob, &label) in labels.iter().enumerate() {
            assert!(
                a.codes[blob * 50..(blob + 1) * 50]
                    .iter()
                    .all(|&c| c == label)
            );
        }
        assert!(labels[0] != labels[1] && labels[1] != labels[2] && labels[0] != labels[2]);
        assert!(a.dists.iter().all(|&d| d < 0.5));
    }

    #[test]
    fn empty_clusters_are_repaired() {
        // 4 distinct points, 2 duplicates each; centroids 2 and 3 start empty.
        let x = [
            0.0f32, 0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0, 9.0, 9.0, 9.0, 9.0,
        ];
        let codes = [0u32, 0, 1, 1, 1, 1];
        let dists = [0.0f32, 0.0, 1.0, 1.0, 50.0, 50.0];
        let c = update_centroids(&x, 2, 4, &codes, &dists);
        assert_eq!(
            &c[4..6],
            &[9.0, 9.0],
            "empty cluster takes the worst-served point"
        );
        assert_eq!(&c[6..8], &[9.0, 9.0]);
        assert_eq!(&c[0..2], &[0.0, 0.0]);
    }

    #[test]
    fn too_few_points_is_an_error() {
        let km = KMeans {
            k: 10,
            max_iters: 5,
            seed: 0,
            init: Init::Random,
        };
        let e = km.fit(&[0.0; 8], 2, &Progress::hidden()).err().unwrap();
        assert!(
            e.to_string().contains("exceeds the 4 training vectors"),
            "{e}"
        );
    }
}
