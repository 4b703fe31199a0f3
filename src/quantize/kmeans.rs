//! k-means: k-means++ or k-means|| seeding, Lloyd iterations with GEMM
//! assignment, and empty-cluster repair. Deterministic for a seed whatever the thread count:
//! every reduction runs over fixed chunks combined in order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::QuantizeError;
use super::codebook::{Codebook, sq_dist, sq_norm};
use crate::progress::Progress;

/// How the first centroids are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Init {
    /// k-means++: each next centroid drawn with probability ∝ squared distance
    /// (`k` sequential passes over the data).
    KMeansPlusPlus,
    /// k-means|| (Bahmani et al. 2012) over a sample of 64 points per
    /// centroid: a few passes each oversampling `k`
    /// candidates ∝ squared distance, then k-means++ over the candidates
    /// weighted by the points nearest each. k-means++'s quality in
    /// `PARALLEL_ROUNDS + 1` GEMM passes instead of `k` scalar ones.
    #[default]
    KMeansParallel,
    /// `k` distinct random points (as faiss does).
    Random,
}

impl Init {
    /// The name `quantizer.json` records.
    pub fn name(self) -> &'static str {
        match self {
            Init::KMeansPlusPlus => "kmeans++",
            Init::KMeansParallel => "kmeans||",
            Init::Random => "random",
        }
    }
}

/// Lloyd iterations and seeding of one k-means run.
#[derive(Clone, Debug)]
pub struct KMeans {
    pub k: usize,
    /// Upper bound on Lloyd iterations; stops earlier once no assignment changes.
    pub max_iters: usize,
    /// Stops once an iteration lowers the mean squared distance by less than
    /// this fraction of it (0: only `max_iters` or convergence stop).
    pub tolerance: f64,
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
    /// The first centroids for the `n × dim` row-major `x`, as `init`
    /// chooses them (what [`Self::fit`] starts its Lloyd iterations from).
    pub fn seed_centroids(&self, x: &[f32], dim: usize) -> Result<Codebook, QuantizeError> {
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
            Init::KMeansParallel => kmeans_parallel(x, dim, self.k, &mut rng),
            Init::Random => rand::seq::index::sample(&mut rng, n, self.k)
                .iter()
                .flat_map(|i| &x[i * dim..(i + 1) * dim])
                .copied()
                .collect(),
        };
        Ok(Codebook::new(init, dim))
    }

    /// Clusters the `n × dim` row-major `x`.
    pub fn fit(&self, x: &[f32], dim: usize, progress: &Progress) -> Result<Fit, QuantizeError> {
        let mut codebook = self.seed_centroids(x, dim)?;
        let bar = progress.bar(self.max_iters as u64, "k-means");
        let (mut codes, mut dists) = codebook.assign(x);
        let mut iterations = 0;
        let mut cost = mean(&dists);
        for _ in 0..self.max_iters {
            iterations += 1;
            let centroids = update_centroids(x, dim, self.k, &codes, &dists);
            codebook = Codebook::new(centroids, dim);
            let (new_codes, new_dists) = codebook.assign(x);
            let changed = new_codes.iter().zip(&codes).filter(|(a, b)| a != b).count();
            codes = new_codes;
            dists = new_dists;
            bar.inc(1);
            let next = mean(&dists);
            let gain = cost - next;
            cost = next;
            if changed == 0 || (self.tolerance > 0.0 && gain <= self.tolerance * next) {
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

/// Mean of the values, in `f64`.
pub(super) fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&d| f64::from(d)).sum::<f64>() / v.len().max(1) as f64
}

/// k-means++ seeding: each next centroid is a point drawn with probability
/// proportional to its squared distance to the nearest centroid so far.
fn kmeans_plus_plus(x: &[f32], dim: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    weighted_plus_plus(x, dim, None, k, rng)
}

/// k-means++ where point `i` counts `weights[i]` times (all once when
/// `None`). Weighted (k-means||'s reduce step over a few thousand
/// candidates), each step draws `2 + ln k` points and keeps the one that
/// lowers the weighted cost most (greedy k-means++, as scikit-learn does).
fn weighted_plus_plus(
    x: &[f32],
    dim: usize,
    weights: Option<&[f32]>,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let n = x.len() / dim;
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let weight = |i: usize| weights.map_or(1.0, |w| f64::from(w[i]));
    let trials = if weights.is_some() {
        2 + (k as f64).ln() as usize
    } else {
        1
    };
    let mut centroids = Vec::with_capacity(k * dim);
    let first = match weights {
        None => rng.random_range(0..n),
        Some(w) => draw(w.iter().map(|&v| f64::from(v)), rng).unwrap_or(0),
    };
    centroids.extend_from_slice(row(first));
    let mut d2: Vec<f32> = x.par_chunks(dim).map(|p| sq_dist(p, row(first))).collect();
    let norms: Vec<f32> = x.chunks_exact(dim).map(sq_norm).collect();
    // Few points (k-means||'s candidates): all pairwise distances once, by
    // one GEMM, so each trial is a row lookup.
    let pairwise = (trials > 1 && n <= PAIRWISE_MAX_POINTS).then(|| {
        let all = Codebook::new(x.to_vec(), dim);
        let mut d = vec![0f32; n * n];
        x.par_chunks(64 * dim)
            .zip(d.par_chunks_mut(64 * n))
            .zip(norms.par_chunks(64))
            .for_each(|((xb, db), nb)| {
                all.dots(xb, db);
                for (row, &xn) in db.chunks_exact_mut(n).zip(nb) {
                    for (v, &cn) in row.iter_mut().zip(all.norms()) {
                        *v = (xn + cn - 2.0 * *v).max(0.0);
                    }
                }
            });
        d
    });
    let mut dots = vec![0f32; if pairwise.is_some() { 0 } else { n * trials }];
    for _ in 1..k {
        let mass = d2
            .iter()
            .enumerate()
            .map(|(i, &v)| f64::from(v) * weight(i));
        // Every point coincides with a centroid: duplicates are unavoidable.
        let picks: Vec<usize> = (0..trials)
            .map(|_| draw(mass.clone(), rng).unwrap_or_else(|| rng.random_range(0..n)))
            .collect();
        let next = if trials == 1 {
            picks[0]
        } else {
            // The cost after adding each pick: pairwise rows, or one GEMM of
            // points × picks.
            let tried = Codebook::new(picks.iter().flat_map(|&p| row(p)).copied().collect(), dim);
            if pairwise.is_none() {
                tried.dots(x, &mut dots);
            }
            let dist = |i: usize, t: usize| match &pairwise {
                Some(m) => m[picks[t] * n + i],
                None => (norms[i] + tried.norms()[t] - 2.0 * dots[i * trials + t]).max(0.0),
            };
            let cost = |t: usize| -> f64 {
                (0..n)
                    .map(|i| f64::from(d2[i].min(dist(i, t))) * weight(i))
                    .sum()
            };
            let best = (0..trials)
                .map(|t| (cost(t), t))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                .expect("at least one trial");
            picks[best.1]
        };
        let c = row(next);
        centroids.extend_from_slice(c);
        // A chosen point is at distance 0, not at GEMM rounding noise.
        d2[next] = 0.0;
        let nearer = |(d, p): (&mut f32, &[f32])| *d = d.min(sq_dist(p, c));
        if let Some(m) = &pairwise {
            d2.iter_mut()
                .zip(&m[next * n..(next + 1) * n])
                .for_each(|(d, &e)| *d = d.min(e));
        } else if n >= PARALLEL_MIN_POINTS {
            d2.par_iter_mut().zip(x.par_chunks(dim)).for_each(nearer);
        } else {
            // A few thousand candidates: a parallel pass costs more in wake-ups.
            d2.iter_mut().zip(x.chunks_exact(dim)).for_each(nearer);
        }
    }
    centroids
}

/// Below this many points a seeding pass runs on one thread.
const PARALLEL_MIN_POINTS: usize = 1 << 14;
/// Up to this many points the greedy reduce step keeps all pairwise
/// distances (64 MiB at the limit).
const PAIRWISE_MAX_POINTS: usize = 4096;

/// An index drawn with probability ∝ its mass; `None` when all mass is zero.
fn draw(mass: impl Iterator<Item = f64> + Clone, rng: &mut ChaCha8Rng) -> Option<usize> {
    let total: f64 = mass.clone().sum();
    if total <= 0.0 {
        return None;
    }
    let mut target = rng.random::<f64>() * total;
    let mut last = None;
    for (i, v) in mass.enumerate() {
        if v > 0.0 {
            last = Some(i);
            target -= v;
            if target < 0.0 {
                return Some(i);
            }
        }
    }
    last
}

/// Oversampling rounds of k-means||; Bahmani et al. find 5 enough.
const PARALLEL_ROUNDS: usize = 5;
/// k-means|| seeds from at most this many points per centroid (Lloyd
/// iterations over all points follow).
const SEED_POINTS_PER_CENTROID: usize = 64;

/// k-means|| seeding over a sample of `SEED_POINTS_PER_CENTROID · k` points:
/// one uniform point, then `PARALLEL_ROUNDS` passes that keep each point with
/// probability `min(1, k·d²/Σd²)` (d² to the nearest candidate so far, updated
/// by one GEMM against each round's picks), then k-means++ over the candidates,
/// each weighted by the points nearest to it, picks the `k` centroids.
fn kmeans_parallel(x: &[f32], dim: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = x.len() / dim;
    let sample;
    let x = if n > SEED_POINTS_PER_CENTROID * k {
        let mut idx = rand::seq::index::sample(rng, n, SEED_POINTS_PER_CENTROID * k).into_vec();
        idx.sort_unstable();
        sample = idx
            .iter()
            .flat_map(|&i| &x[i * dim..(i + 1) * dim])
            .copied()
            .collect::<Vec<f32>>();
        &sample[..]
    } else {
        x
    };
    let n = x.len() / dim;
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let first = rng.random_range(0..n);
    let mut chosen = vec![false; n];
    chosen[first] = true;
    let mut candidates = vec![first];
    // Each point's squared distance to its nearest candidate, and which one.
    let mut d2: Vec<f32> = x.par_chunks(dim).map(|p| sq_dist(p, row(first))).collect();
    let mut owner = vec![0u32; n];
    let oversample = k as f64;
    for _ in 0..PARALLEL_ROUNDS {
        let total: f64 = d2.iter().map(|&v| f64::from(v)).sum();
        if total <= 0.0 {
            break;
        }
        let picked: Vec<usize> = (0..n)
            .filter(|&i| {
                let u = rng.random::<f64>();
                !chosen[i] && u < oversample * f64::from(d2[i]) / total
            })
            .collect();
        if picked.is_empty() {
            continue;
        }
        let round = Codebook::new(picked.iter().flat_map(|&i| row(i)).copied().collect(), dim);
        let (near, near_d2) = round.assign(x);
        for ((d, o), (c, e)) in d2
            .iter_mut()
            .zip(&mut owner)
            .zip(near.into_iter().zip(near_d2))
        {
            if e < *d {
                *d = e;
                *o = (candidates.len() + c as usize) as u32;
            }
        }
        picked.iter().for_each(|&i| chosen[i] = true);
        candidates.extend(picked);
    }
    let mut weights = vec![0f32; candidates.len()];
    owner.iter().for_each(|&c| weights[c as usize] += 1.0);
    if candidates.len() < k {
        // Too few distinct candidates (tiny or duplicated data): top up at random.
        let rest: Vec<usize> = (0..n).filter(|&i| !chosen[i]).collect();
        let extra = rand::seq::index::sample(rng, rest.len(), k - candidates.len());
        candidates.extend(extra.iter().map(|j| rest[j]));
        weights.resize(candidates.len(), 1.0);
    }
    let points: Vec<f32> = candidates.iter().flat_map(|&i| row(i)).copied().collect();
    weighted_plus_plus(&points, dim, Some(&weights), k, rng)
}

/// Means of the assigned points; an empty cluster takes the point worst served
/// by its current centroid (each such point used once).
pub(super) fn update_centroids(
    x: &[f32],
    dim: usize,
    k: usize,
    codes: &[u32],
    dists: &[f32],
) -> Vec<f32> {
    let n = codes.len();
    let (mut centroids, counts) = cluster_means(x, dim, k, codes);
    let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0).collect();
    if !empty.is_empty() {
        let mut worst: Vec<usize> = (0..n).collect();
        worst.sort_unstable_by(|&a, &b| dists[b].total_cmp(&dists[a]).then(a.cmp(&b)));
        for (&j, &p) in empty.iter().zip(&worst) {
            centroids[j * dim..(j + 1) * dim].copy_from_slice(&x[p * dim..(p + 1) * dim]);
        }
    }
    centroids
}

/// The mean of the rows of `x` coded `j`, for every code `j < k` (zeros for
/// codes without rows), and how many rows each code has. Sums run in `f64`
/// over fixed chunks combined in order, so results do not depend on threads.
pub(super) fn cluster_means(
    x: &[f32],
    dim: usize,
    k: usize,
    codes: &[u32],
) -> (Vec<f32>, Vec<u64>) {
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
                    *s += f64::from(v);
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
    let mut means = vec![0f32; k * dim];
    for j in (0..k).filter(|&j| counts[j] > 0) {
        let inv = 1.0 / counts[j] as f64;
        for (c, s) in means[j * dim..(j + 1) * dim]
            .iter_mut()
            .zip(&sums[j * dim..(j + 1) * dim])
        {
            *c = (s * inv) as f32;
        }
    }
    (means, counts)
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
        for init in [Init::KMeansPlusPlus, Init::KMeansParallel] {
            finds_blobs_with(init);
        }
    }

    fn finds_blobs_with(init: Init) {
        let (x, d) = blobs();
        let km = KMeans {
            k: 3,
            max_iters: 25,
            tolerance: 0.0,
            seed: 3,
            init,
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

    /// Many clusters, few points each: k-means|| reaches k-means++'s cost
    /// (within 5%, seeds 0..4 averaged) and beats random seeding, which
    /// leaves clusters split and merged.
    #[test]
    fn kmeans_parallel_seeds_as_well_as_kmeans_plus_plus() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let centers: Vec<[f32; 4]> = (0..64)
            .map(|_| std::array::from_fn(|_| rng.random_range(-50.0..50.0)))
            .collect();
        let x: Vec<f32> = (0..64 * 40)
            .flat_map(|i| centers[i % 64].map(|c| c + rng.random_range(-1.0f32..1.0)))
            .collect();
        let cost = |init: Init| -> f64 {
            (0..5)
                .map(|seed| {
                    let km = KMeans {
                        k: 64,
                        max_iters: 0,
                        tolerance: 0.0,
                        seed,
                        init,
                    };
                    mean(&km.fit(&x, 4, &Progress::hidden()).unwrap().dists)
                })
                .sum::<f64>()
                / 5.0
        };
        let (pp, par, random) = (
            cost(Init::KMeansPlusPlus),
            cost(Init::KMeansParallel),
            cost(Init::Random),
        );
        assert!(par <= 1.05 * pp, "k-means|| {par} vs k-means++ {pp}");
        assert!(par < random, "k-means|| {par} vs random {random}");
    }

    /// A tolerance stops Lloyd iterations before `max_iters`; without one
    /// they run until no assignment changes.
    #[test]
    fn a_tolerance_stops_lloyd_early() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x: Vec<f32> = (0..3000).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let fit = |tolerance| {
            let km = KMeans {
                k: 20,
                max_iters: 200,
                tolerance,
                seed: 1,
                init: Init::KMeansParallel,
            };
            km.fit(&x, 3, &Progress::hidden()).unwrap()
        };
        let (loose, exact) = (fit(1e-2), fit(0.0));
        assert!(
            loose.iterations < exact.iterations,
            "{} vs {}",
            loose.iterations,
            exact.iterations
        );
        assert!(mean(&exact.dists) <= mean(&loose.dists) * (1.0 + 1e-6));
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
            tolerance: 0.0,
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
