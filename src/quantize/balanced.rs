//! Balanced assignment: each code of a layer receives `⌊n / k⌋` rows, and
//! `n mod k` of them one more, so code sizes differ by at most one item and
//! utilisation is flat by construction.
//!
//! The assignment is greedy by regret. Every row ranks its `CANDIDATES`
//! nearest centroids (one GEMM per block). Rows are then placed in order of
//! regret, the distance from their nearest to their second-nearest centroid,
//! largest first. Each row takes its nearest candidate that still has room;
//! a row whose candidates are all full waits for the next round, which
//! ranks the waiting rows again against the centroids with room only (one
//! GEMM over those) and places them the same way. The first row of a round
//! always finds room, and the rooms add up to `n`, so every row is placed.
//!
//! Cost: the same GEMM as a nearest-centroid pass, plus an `n log n` sort,
//! plus a smaller GEMM per extra round. Training runs Lloyd iterations with
//! this assignment in place of the nearest centroid (balanced k-means).

use rayon::prelude::*;

use super::codebook::Codebook;
use super::kmeans::{mean, update_centroids};

/// Centroids each row ranks per round.
const CANDIDATES: usize = 8;
/// Rows per GEMM block.
const BLOCK_ROWS: usize = 256;

/// The balanced code and squared distance of every row of `x`.
pub fn assign_balanced(cb: &Codebook, x: &[f32]) -> (Vec<u32>, Vec<f32>) {
    let dim = cb.dim();
    let k = cb.k();
    let n = x.len() / dim;
    let floor = n / k.max(1);
    let mut rooms = Rooms {
        sizes: vec![0; k],
        floor,
        // Codes that may still grow past `floor` (to `floor + 1`).
        bonus: n - floor * k,
    };
    let mut codes = vec![0u32; n];
    let mut dists = vec![0f32; n];
    let mut waiting: Vec<usize> = (0..n).collect();
    while !waiting.is_empty() {
        let open: Vec<usize> = (0..k).filter(|&j| rooms.has_room(j)).collect();
        let sub = Codebook::new(
            open.iter().flat_map(|&j| cb.centroid(j)).copied().collect(),
            dim,
        );
        // The first round ranks every row in place; later ones a copy of the few waiting.
        let rows: std::borrow::Cow<[f32]> = if waiting.len() == n {
            x.into()
        } else {
            waiting
                .iter()
                .flat_map(|&i| &x[i * dim..(i + 1) * dim])
                .copied()
                .collect::<Vec<f32>>()
                .into()
        };
        let c = CANDIDATES.min(open.len());
        let ranked = rank(&sub, &rows, c);
        let regret = |w: usize| {
            let row = &ranked[w * c..(w + 1) * c];
            row.get(1).map_or(0.0, |second| second.1 - row[0].1)
        };
        let mut order: Vec<usize> = (0..waiting.len()).collect();
        order.par_sort_unstable_by(|&a, &b| regret(b).total_cmp(&regret(a)).then(a.cmp(&b)));
        let mut next = Vec::new();
        for w in order {
            let row = &ranked[w * c..(w + 1) * c];
            match row.iter().find(|(j, _)| rooms.has_room(open[*j as usize])) {
                Some(&(j, dist)) => {
                    let code = open[j as usize];
                    rooms.take(code);
                    codes[waiting[w]] = code as u32;
                    dists[waiting[w]] = dist;
                }
                None => next.push(waiting[w]),
            }
        }
        next.sort_unstable();
        waiting = next;
    }
    (codes, dists)
}

/// How many rows each code holds, and how many codes may still take one
/// past `floor`.
struct Rooms {
    sizes: Vec<usize>,
    floor: usize,
    bonus: usize,
}

impl Rooms {
    fn has_room(&self, j: usize) -> bool {
        self.sizes[j] < self.floor || (self.sizes[j] == self.floor && self.bonus > 0)
    }

    fn take(&mut self, j: usize) {
        if self.sizes[j] == self.floor {
            self.bonus -= 1;
        }
        self.sizes[j] += 1;
    }
}

/// Each row's `c` nearest centroids of `cb`, nearest first: (index in `cb`,
/// squared distance), `c` per row.
fn rank(cb: &Codebook, x: &[f32], c: usize) -> Vec<(u32, f32)> {
    let (dim, k) = (cb.dim(), cb.k());
    let n = x.len() / dim;
    let mut ranked = vec![(0u32, 0f32); n * c];
    x.par_chunks(BLOCK_ROWS * dim)
        .zip(ranked.par_chunks_mut(BLOCK_ROWS * c))
        .for_each_init(Vec::new, |dots, (xb, rb)| {
            let rows = xb.len() / dim;
            dots.resize(rows * k, 0.0);
            cb.dots(xb, dots);
            for (r, top) in rb.chunks_exact_mut(c).enumerate() {
                // The c least `‖c_j‖² − 2x·c_j`, kept sorted by insertion:
                // most centroids fail the first comparison.
                let mut len = 0;
                for (j, (&dot, &norm)) in
                    dots[r * k..(r + 1) * k].iter().zip(cb.norms()).enumerate()
                {
                    let v = norm - 2.0 * dot;
                    if len == c && v >= top[c - 1].1 {
                        continue;
                    }
                    let mut at = len.min(c - 1);
                    while at > 0 && top[at - 1].1 > v {
                        top[at] = top[at - 1];
                        at -= 1;
                    }
                    top[at] = (j as u32, v);
                    len = (len + 1).min(c);
                }
                let norm = super::sq_norm(&xb[r * dim..(r + 1) * dim]);
                top.iter_mut().for_each(|t| t.1 = (t.1 + norm).max(0.0));
            }
        });
    ranked
}

/// Balanced k-means from `start`: at most `iters` Lloyd iterations, each with
/// the balanced assignment, stopping once one lowers the mean squared
/// distance by less than `tolerance` of it; a centroid is the mean of its
/// rows (every code has rows when `n ≥ k`). The greedy assignment is not
/// monotone, so the codebook of least cost and its assignment are returned.
pub fn balanced_lloyd(
    start: Codebook,
    x: &[f32],
    iters: usize,
    tolerance: f64,
) -> (Codebook, Vec<u32>) {
    let dim = start.dim();
    let k = start.k();
    let mut cb = start;
    let (mut codes, mut dists) = assign_balanced(&cb, x);
    let mut cost = mean(&dists);
    let mut best = (cost, cb.clone(), codes.clone());
    for _ in 0..iters {
        cb = Codebook::new(update_centroids(x, dim, k, &codes, &dists), dim);
        let (next, next_dists) = assign_balanced(&cb, x);
        let same = next == codes;
        (codes, dists) = (next, next_dists);
        let now = mean(&dists);
        let gain = cost - now;
        cost = now;
        if now < best.0 {
            best = (now, cb.clone(), codes.clone());
        }
        if same || (tolerance > 0.0 && gain <= tolerance * now) {
            break;
        }
    }
    (best.1, best.2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::sq_dist;

    /// Two tight blobs of 90 and 10 points and k = 2 centroids at the blobs:
    /// nearest-centroid gives 90/10, the balanced assignment 50/50, moving the
    /// blob-1 points nearest to centroid 2 (so the cost rises least).
    #[test]
    fn sizes_differ_by_at_most_one_and_the_cheapest_rows_move() {
        let mut x = Vec::new();
        for i in 0..90 {
            x.extend([i as f32 * 0.01, 0.0]);
        }
        for i in 0..10 {
            x.extend([10.0 + i as f32 * 0.01, 0.0]);
        }
        let cb = Codebook::new(vec![0.45, 0.0, 10.05, 0.0], 2);
        let (codes, dists) = assign_balanced(&cb, &x);
        let ones = codes.iter().filter(|&&c| c == 1).count();
        assert_eq!(ones, 50);
        // The 40 moved are blob 1's right end (largest x), not arbitrary rows.
        assert!(codes[..50].iter().all(|&c| c == 0));
        assert!(codes[50..].iter().all(|&c| c == 1));
        for (i, (&c, &d)) in codes.iter().zip(&dists).enumerate() {
            let want = sq_dist(&x[i * 2..i * 2 + 2], cb.centroid(c as usize));
            assert!((d - want).abs() < 1e-4, "row {i}: {d} vs {want}");
        }
        // Uneven n: sizes ⌈n/k⌉ and ⌊n/k⌋.
        let (codes, _) = assign_balanced(&cb, &x[..2 * 99]);
        let ones = codes.iter().filter(|&&c| c == 1).count();
        assert!(ones == 49 || ones == 50, "{ones}");
    }

    #[test]
    fn balanced_lloyd_keeps_the_balance_and_lowers_the_cost() {
        let x: Vec<f32> = (0..400)
            .flat_map(|i| {
                let t = i as f32;
                [(t * 0.37).sin() * (1.0 + (i % 7) as f32), (t * 0.11).cos()]
            })
            .collect();
        let start = Codebook::new(x[..8 * 2].to_vec(), 2);
        let cost = |cb: &Codebook, codes: &[u32]| -> f32 {
            codes
                .iter()
                .enumerate()
                .map(|(i, &c)| sq_dist(&x[i * 2..i * 2 + 2], cb.centroid(c as usize)))
                .sum()
        };
        let (first, _) = assign_balanced(&start, &x);
        let (cb, codes) = balanced_lloyd(start.clone(), &x, 10, 0.0);
        let mut sizes = [0usize; 8];
        codes.iter().for_each(|&c| sizes[c as usize] += 1);
        assert!(sizes.iter().all(|&s| s == 50), "{sizes:?}");
        assert!(cost(&cb, &codes) < cost(&start, &first));
    }
}
