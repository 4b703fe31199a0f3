//! The inverse of a stored permutation without storing it: every `step`-th
//! element along each cycle of π is marked and keeps a back pointer
//! π^-step; π⁻¹(k) walks forward from k to the next mark (< step moves),
//! jumps back, and walks on to k's predecessor — at most 2·step reads of π
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

/// Marks every `step`-th element of each cycle of `pi` longer than `step`
/// (`pi` must be a permutation of `0..n`); memory beyond the result is one
/// bit per element and `step` entries.
pub fn build(n: u64, step: u64, pi: impl Fn(u64) -> u64) -> Shortcuts {
    let words = n.div_ceil(64) as usize;
    let mut seen = vec![0u64; words];
    let mut marks = vec![0u64; words];
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    let mut ring = vec![0u64; step as usize];
    let set = |bits: &mut [u64], p: u64| bits[(p / 64) as usize] |= 1 << (p % 64);
    let is_set = |bits: &[u64], p: u64| bits[(p / 64) as usize] >> (p % 64) & 1 == 1;
    for start in 0..n {
        if is_set(&seen, start) {
            continue;
        }
        // Walk the cycle c_0 = start, c_1 = π(c_0), …; c_kstep (k ≥ 1) points
        // back to c_(k-1)step, and c_0 to c_(len - step) once the length is known.
        let (mut c, mut i) = (start, 0u64);
        loop {
            set(&mut seen, c);
            if i >= step && i % step == 0 {
                pairs.push((c, ring[(i % step) as usize]));
            }
            ring[(i % step) as usize] = c;
            i += 1;
            c = pi(c);
            if c == start {
                break;
            }
        }
        if i > step {
            pairs.push((start, ring[(i % step) as usize]));
        }
    }
    pairs.sort_unstable();
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
