//! Balanced assignment: each code of a layer receives `⌊n / k⌋` rows, and
//! `n mod k` of them one more, so code sizes differ by at most one item and
//! utilisation is flat by construction.
//!
//! The assignment is greedy by regret. Every row ranks its `CANDIDATES`
//! nearest centroids (one GEMM per block). Rows are then placed in order of
//! regret, the distance from their nearest to their second-nearest centroid,
//! largest first. Each row takes its nearest centroid that still has room.
//! A row whose candidates are all full scans every centroid for the nearest
//! one with room; the rooms add up to `n`, so one always has room.
//!
//! Cost: the same GEMM as a nearest-centroid pass, plus an `n log n` sort.
//! Training runs Lloyd iterations with this assignment in place of the
//! nearest centroid (balanced k-means).

use rayon::prelude::*;

use super::codebook::{Codebook, sq_dist, sq_norm};

/// Centroids each row ranks before falling back to a full scan.
const CANDIDATES: usize = 8;
/// Rows per GEMM block.
const BLOCK_ROWS: usize = 256;

/// The balanced code and squared distance of every row of `x`.
pub fn assign_balanced(cb: &Codebook, x: &[f32]) -> (Vec<u32>, Vec<f32>) {
    let dim = cb.dim();
    let k = cb.k();
    let n = x.len() / dim;
    let floor = n / k.max(1);
    // Codes that may still grow past `floor` (to `floor + 1`).
    let mut bonus = n - floor * k;
    let c = CANDIDATES.min(k);
    // Each row's `c` nearest centroids, nearest first: (code, squared distance).
    let mut ranked = vec![(0u32, 0f32); n * c];
    x.par_chunks(BLOCK_ROWS * dim)
        .zip(ranked.par_chunks_mut(BLOCK_ROWS * c))
        .for_each_init(
            || (Vec::new(), Vec::with_capacity(k)),
            |(dots, all), (xb, rb)| {
                let rows = xb.len() / dim;
                dots.resize(rows * k, 0.0);
                cb.dots(xb, dots);
                for r in 0..rows {
                    let norm = sq_norm(&xb[r * dim..(r + 1) * dim]);
                    // One scratch row per task, not an allocation per row.
                    all.clear();
                    all.extend((0..k).map(|j| {
                        let d = (norm + cb.norms()[j] - 2.0 * dots[r * k + j]).max(0.0);
                        (j as u32, d)
                    }));
                    let by_distance =
                        |a: &(u32, f32), b: &(u32, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
                    if c < k {
                        all.select_nth_unstable_by(c - 1, by_distance);
                        all.truncate(c);
                    }
                    all.sort_unstable_by(by_distance);
                    rb[r * c..(r + 1) * c].copy_from_slice(&all[..c]);
                }
            },
        );
    let regret = |i: usize| {
        let row = &ranked[i * c..(i + 1) * c];
        row.get(1).map_or(0.0, |second| second.1 - row[0].1)
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.par_sort_unstable_by(|&a, &b| regret(b).total_cmp(&regret(a)).then(a.cmp(&b)));
    let mut sizes = vec![0usize; k];
    let mut codes = vec![0u32; n];
    let mut dists = vec![0f32; n];
    for i in order {
        let row = &ranked[i * c..(i + 1) * c];
        let room = |j: usize| sizes[j] < floor || (sizes[j] == floor && bonus > 0);
        let (code, dist) = match row.iter().find(|(j, _)| room(*j as usize)) {
            Some(&hit) => hit,
            None => {
                let xi = &x[i * dim..(i + 1) * dim];
                (0..k)
                    .filter(|&j| room(j))
                    .map(|j| (j as u32, sq_dist(xi, cb.centroid(j))))
                    .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                    .expect("the rooms add up to n: one is left for every row")
            }
        };
        if sizes[code as usize] == floor {
            bonus -= 1;
        }
        sizes[code as usize] += 1;
        codes[i] = code;
        dists[i] = dist;
    }
    (codes, dists)
}

/// Balanced k-means from `start`: `iters` Lloyd iterations, each with the
/// balanced assignment; a centroid is the mean of its rows (every code has
/// rows when `n ≥ k`). Returns the codebook and the last assignment.
pub fn balanced_lloyd(start: Codebook, x: &[f32], iters: usize) -> (Codebook, Vec<u32>) {
    let dim = start.dim();
    let k = start.k();
    let mut cb = start;
    let (mut codes, _) = assign_balanced(&cb, x);
    for _ in 0..iters {
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (row, &code) in x.chunks_exact(dim).zip(&codes) {
            let j = code as usize;
            counts[j] += 1;
            for (s, &v) in sums[j * dim..(j + 1) * dim].iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let mut centroids = cb.centroids().to_vec();
        for j in 0..k {
            if counts[j] > 0 {
                for (c, s) in centroids[j * dim..(j + 1) * dim]
                    .iter_mut()
                    .zip(&sums[j * dim..(j + 1) * dim])
                {
                    *c = (*s / counts[j] as f64) as f32;
                }
            }
        }
        cb = Codebook::new(centroids, dim);
        let (next, _) = assign_balanced(&cb, x);
        if next == codes {
            break;
        }
        codes = next;
    }
    (cb, codes)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (cb, codes) = balanced_lloyd(start.clone(), &x, 10);
        let mut sizes = [0usize; 8];
        codes.iter().for_each(|&c| sizes[c as usize] += 1);
        assert!(sizes.iter().all(|&s| s == 50), "{sizes:?}");
        assert!(cost(&cb, &codes) < cost(&start, &first));
    }
}
