//! The inverse of a stored permutation without storing it: elements at
//! most `step` apart along each cycle of π are marked and keep a back
//! pointer to the mark before; π⁻¹(k) walks forward from k to the next mark
//! (< step moves), jumps back, and walks on to k's predecessor — at most 2·step reads of π
//! for `(1 + 1/step)·log2 n` bits instead of the `2·log2 n` of both maps
//! (Munro, Raman, Raman and Rao's shortcut representation).

use vers_vecs::RsVec;

/// The marks of a permutation's cycles and their back pointers.
pub struct Shortcuts {
    /// Bit `p`: position `p` carries a back pointer.
    pub marks: Vec<u64>,
    /// Back pointers of the marked positions, in position order.
    pub back: Vec<u64>,
}

/// Cycle walks interleaved in [`build`], so that their reads of π (each a
/// cache miss on a large permutation) overlap.
const WALKS: usize = 16;

/// One walk along a cycle of π, from a start no other walk had reached.
struct Walk {
    start: u64,
    /// The next position, not yet claimed by this walk.
    at: u64,
    /// Positions claimed so far (the start included).
    len: u64,
    /// The walk's last mark (its start until it places one).
    last_mark: u64,
}

/// Marks the cycles of `pi` (a permutation of `0..n`) so that every
/// cycle longer than `step` has a mark at most `step` positions after
/// each of its elements, each pointing back to the mark before it.
///
/// [`WALKS`] walks go at a time, each starting at the lowest unclaimed
/// position of its stretch of `0..n`, and each ends where it reaches another's start (a claimed position is
/// always a start: its one predecessor is the position just left). A walk
/// marks every `step`-th position after its start, and its start is marked
/// — pointing back to the last mark of the walk that ended there — when the
/// cycle took more than one walk or is longer than `step`. Memory beyond the
/// result is one bit per element.
pub fn build(n: u64, step: u64, pi: impl Fn(u64) -> u64) -> Shortcuts {
    let words = n.div_ceil(64) as usize;
    let mut seen = vec![0u64; words];
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    let set = |bits: &mut [u64], p: u64| bits[(p / 64) as usize] |= 1 << (p % 64);
    let is_set = |bits: &[u64], p: u64| bits[(p / 64) as usize] >> (p % 64) & 1 == 1;
    // Walk `w` starts in its own stretch of positions, so that the short
    // cycles of a nearly sorted π are rarely split between walks.
    let stretch = n.div_ceil(WALKS as u64).max(1);
    let mut scans: Vec<(u64, u64)> = (0..WALKS as u64)
        .map(|w| ((w * stretch).min(n), ((w + 1) * stretch).min(n)))
        .collect();
    let mut walks: Vec<Option<Walk>> = (0..WALKS).map(|_| None).collect();
    loop {
        let mut active = false;
        for (walk, scan) in walks.iter_mut().zip(&mut scans) {
            let Some(wk) = walk else {
                while scan.0 < scan.1 && is_set(&seen, scan.0) {
                    scan.0 += 1;
                }
                if scan.0 < scan.1 {
                    let start = scan.0;
                    set(&mut seen, start);
                    *walk = Some(Walk {
                        start,
                        at: pi(start),
                        len: 1,
                        last_mark: start,
                    });
                    active = true;
                }
                continue;
            };
            active = true;
            let c = wk.at;
            if is_set(&seen, c) {
                // `c` is a start: this walk's own (the cycle is done) or another's.
                if c != wk.start || wk.len > step {
                    pairs.push((c, wk.last_mark));
                }
                *walk = None;
                continue;
            }
            set(&mut seen, c);
            if wk.len % step == 0 {
                pairs.push((c, wk.last_mark));
                wk.last_mark = c;
            }
            wk.len += 1;
            wk.at = pi(c);
        }
        if !active {
            break;
        }
    }
    pairs.sort_unstable();
    let mut marks = vec![0u64; words];
    for &(p, _) in &pairs {
        set(&mut marks, p);
    }
    Shortcuts {
        marks,
        back: pairs.into_iter().map(|(_, b)| b).collect(),
    }
}

/// π⁻¹(k). `pi` must be a permutation (checked when the file was opened);
/// the shortcuts only speed the walk up: a wrong back pointer (a forged
/// file) makes the walk fall back to following the cycle, never loop.
pub fn inverse(
    k: u64,
    step: u64,
    pi: impl Fn(u64) -> u64,
    marks: &RsVec,
    back: impl Fn(u64) -> u64,
) -> u64 {
    let (mut j, mut jumped, mut moves) = (k, false, 0u64);
    loop {
        let next = pi(j);
        if next == k {
            return j;
        }
        if !jumped && marks.get(j as usize) == Some(1) {
            j = back(marks.rank1(j as usize) as u64);
            jumped = true;
            continue;
        }
        j = next;
        moves += 1;
        if jumped && moves > 2 * step {
            break;
        }
    }
    // Only a forged back pointer gets here: follow the cycle itself.
    let mut j = k;
    loop {
        let next = pi(j);
        if next == k {
            return j;
        }
        j = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    use vers_vecs::BitVec;

    fn check(pi: &[u64], step: u64) {
        let s = build(pi.len() as u64, step, |p| pi[p as usize]);
        let marks = RsVec::from_bit_vec(BitVec::from_limbs(&s.marks));
        assert_eq!(marks.rank1(pi.len()), s.back.len());
        let mut inv = vec![0u64; pi.len()];
        for (p, &k) in pi.iter().enumerate() {
            inv[k as usize] = p as u64;
        }
        for k in 0..pi.len() as u64 {
            let reads = std::cell::Cell::new(0u64);
            let got = inverse(
                k,
                step,
                |p| {
                    reads.set(reads.get() + 1);
                    pi[p as usize]
                },
                &marks,
                |r| s.back[r as usize],
            );
            assert_eq!(got, inv[k as usize], "π⁻¹({k}) with step {step}");
            assert!(reads.get() <= 2 * step + 1, "{} reads of π", reads.get());
        }
    }

    #[test]
    fn inverts_random_permutations_within_two_steps() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for n in [1usize, 2, 15, 16, 17, 100, 1000] {
            let mut pi: Vec<u64> = (0..n as u64).collect();
            pi.shuffle(&mut rng);
            for step in [1, 2, 16] {
                check(&pi, step);
            }
        }
        // One long cycle and the identity.
        let n = 1000u64;
        check(&(0..n).map(|p| (p + 1) % n).collect::<Vec<_>>(), 16);
        check(&(0..n).collect::<Vec<_>>(), 16);
    }

    #[test]
    fn interleaved_walks_mark_about_one_in_step() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let n = 100_000u64;
        let mut pi: Vec<u64> = (0..n).collect();
        pi.shuffle(&mut rng);
        check(&pi, 16);
        let marks = build(n, 16, |p| pi[p as usize]).back.len() as u64;
        // Every walk adds at most one mark beyond one per `step` positions.
        assert!(marks <= n / 16 + 64 * WALKS as u64, "{marks} marks");
        // Many short cycles (pairs swapped) need none.
        let swaps: Vec<u64> = (0..n).map(|p| p ^ 1).collect();
        check(&swaps, 16);
        assert!(build(n, 16, |p| swaps[p as usize]).back.is_empty());
        assert!(build(n, 16, |p| p).back.is_empty());
    }

    #[test]
    fn forged_back_pointers_still_answer() {
        let n = 500u64;
        let pi: Vec<u64> = (0..n).map(|p| (p * 7 + 3) % n).collect();
        let s = build(n, 8, |p| pi[p as usize]);
        let marks = RsVec::from_bit_vec(BitVec::from_limbs(&s.marks));
        for k in 0..n {
            let got = inverse(k, 8, |p| pi[p as usize], &marks, |_| 0);
            assert_eq!(pi[got as usize], k);
        }
    }
}
