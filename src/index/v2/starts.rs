//! Where each node's degree bits begin in the LOUDS sequence, found without
//! a general `select0`: one sample per block of 64 nodes, then a scan of the
//! few words the block spans — or, for a dense block (one whose nodes have
//! many children between them), a table of all 64 starts. Built at open
//! from the verified LOUDS bits; a beam step reads one sample and one or two
//! LOUDS words before it reaches the children's tokens.

/// Nodes per sample.
const BLOCK: usize = 64;
/// A block whose starts span more words than this gets a table instead of a scan.
const SCAN_WORDS: u64 = 4;
/// Bits of a sample that hold the block's start; the rest hold its table row + 1.
const POS_BITS: u32 = 40;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
/// Dense blocks beyond this many are scanned (correct, slower).
const MAX_ROWS: usize = (1 << (64 - POS_BITS)) - 1;

pub struct DegreeStarts {
    /// Per block: the start of its first node (low `POS_BITS`) and, for a
    /// dense block, 1 + its row in `dense` (the high bits).
    blocks: Vec<u64>,
    /// The starts of a dense block's 64 nodes, relative to its first.
    dense: Vec<[u32; BLOCK]>,
}

impl DegreeStarts {
    /// Samples the LOUDS sequence `words` (`len` bits) of a tree of `nodes` nodes.
    pub fn build(words: &[u64], len: u64, nodes: u64) -> Result<Self, String> {
        if len >= 1 << POS_BITS {
            return Err(format!("{len} LOUDS bits: more than this reader supports"));
        }
        let mut s = Self {
            blocks: Vec::with_capacity(nodes.div_ceil(BLOCK as u64) as usize),
            dense: Vec::new(),
        };
        let mut block = [0u32; BLOCK];
        // Node n + 1 starts one past the n-th 0.
        let mut node = 0u64;
        s.start_block(0, &mut block);
        for zero in positions(words, len, false) {
            let bit = zero as u64;
            node += 1;
            if node == nodes {
                break;
            }
            let j = node as usize % BLOCK;
            if j == 0 {
                s.finish_block(&block);
                s.start_block(bit + 1, &mut block);
            } else {
                let rel = bit + 1 - (s.blocks[s.blocks.len() - 1] & POS_MASK);
                block[j] = u32::try_from(rel)
                    .map_err(|_| format!("node {node}: its block spans {rel} degree bits"))?;
            }
        }
        if node != nodes {
            return Err("the degree bits do not describe a tree of the node count".into());
        }
        s.finish_block(&block);
        Ok(s)
    }

    fn start_block(&mut self, pos: u64, block: &mut [u32; BLOCK]) {
        self.blocks.push(pos);
        *block = [0; BLOCK];
    }

    /// Gives the last block a table if scanning it would read too many words.
    fn finish_block(&mut self, block: &[u32; BLOCK]) {
        let pos = self.blocks[self.blocks.len() - 1];
        let last = block.iter().max().copied().unwrap_or(0);
        let span_words = (pos % 64 + u64::from(last)) / 64;
        if span_words > SCAN_WORDS && self.dense.len() < MAX_ROWS {
            self.dense.push(*block);
            let last = self.blocks.len() - 1;
            self.blocks[last] |= (self.dense.len() as u64) << POS_BITS;
        }
    }

    /// Heap bytes of the samples and tables.
    pub fn heap_bytes(&self) -> u64 {
        (self.blocks.capacity() * 8 + self.dense.capacity() * BLOCK * 4) as u64
    }

    /// The sample of `node`'s block, for the batched step to load early.
    #[inline]
    pub fn sample(&self, node: usize) -> u64 {
        self.blocks[node / BLOCK]
    }

    /// Loads what [`Self::start`] of `node` will read after the sample:
    /// the table entry of a dense block, the (at most two) cache lines of
    /// LOUDS words a scan reads. Returns them folded, for the caller to keep.
    #[inline]
    pub fn touch(&self, words: &[u64], node: usize) -> u64 {
        let e = self.sample(node);
        let row = (e >> POS_BITS) as usize;
        if row != 0 {
            return u64::from(self.dense[row - 1][node % BLOCK]);
        }
        let i = ((e & POS_MASK) / 64) as usize;
        words[i] ^ words[(i + SCAN_WORDS as usize).min(words.len() - 1)]
    }

    /// The first degree bit of `node` (< the node count) in `words`.
    #[inline]
    pub fn start(&self, words: &[u64], node: usize) -> u64 {
        let e = self.sample(node);
        let pos = e & POS_MASK;
        let j = node % BLOCK;
        if j == 0 {
            return pos;
        }
        let row = (e >> POS_BITS) as usize;
        if row != 0 {
            return pos + u64::from(self.dense[row - 1][j]);
        }
        // One past the j-th 0 at or after `pos`.
        let mut i = (pos / 64) as usize;
        let mut zeros = !words[i] & (u64::MAX << (pos % 64));
        let mut need = j as u32;
        loop {
            let c = zeros.count_ones();
            if c >= need {
                return i as u64 * 64 + u64::from(select_in_word(zeros, need - 1)) + 1;
            }
            need -= c;
            i += 1;
            zeros = !words[i];
        }
    }
}

/// Every [`BLOCK`]-th 1 of a bit vector: what [`select_one`] starts from.
pub const ONE_SAMPLE_EVERY: usize = BLOCK;

/// The position of the `k`-th (from 0) 1 of `words`, from `samples` (the
/// position of every [`ONE_SAMPLE_EVERY`]-th 1): a scan of at most
/// [`SCAN_WORDS`] words past the sample — one miss for the sample, one for
/// the words, where a general select walks a directory — or `fallback`
/// where the 1s lie further apart.
#[inline]
pub fn select_one(
    words: &[u64],
    samples: &[u64],
    k: usize,
    fallback: impl FnOnce(usize) -> usize,
) -> u64 {
    let pos = samples[k / BLOCK];
    let mut need = (k % BLOCK) as u32;
    let mut i = (pos / 64) as usize;
    let mut ones = words[i] & (u64::MAX << (pos % 64));
    for _ in 0..=SCAN_WORDS {
        let c = ones.count_ones();
        if c > need {
            return i as u64 * 64 + u64::from(select_in_word(ones, need));
        }
        need -= c;
        i += 1;
        match words.get(i) {
            Some(&w) => ones = w,
            None => break,
        }
    }
    fallback(k) as u64
}

/// The 1s from bit `start` of `words` to the end of its word, and whether
/// they run on into the next word.
#[inline]
pub fn ones_in_word(words: &[u64], start: u64) -> (u64, bool) {
    let off = start % 64;
    let ones = u64::from((!(words[(start / 64) as usize] >> off)).trailing_zeros());
    (ones.min(64 - off), ones >= 64 - off)
}

/// The number of 1s from bit `start` of `words` up to the next 0.
pub fn ones_from(words: &[u64], start: u64) -> u64 {
    let (mut n, mut more) = ones_in_word(words, start);
    while more {
        let (ones, next) = ones_in_word(words, start + n);
        n += ones;
        more = next;
    }
    n
}

/// Positions of the bits equal to `one` among the first `len` bits of
/// `words`, ascending: a word at a time (vers-vecs' select iterators were
/// most of a version's open).
pub fn positions(words: &[u64], len: u64, one: bool) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(move |(w, &word)| {
        let base = w as u64 * 64;
        let valid = if len >= base + 64 {
            u64::MAX
        } else {
            (1u64 << len.saturating_sub(base)) - 1
        };
        let mut bits = if one { word } else { !word } & valid;
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let b = bits.trailing_zeros() as u64;
                bits &= bits - 1;
                (base + b) as usize
            })
        })
    })
}

/// The position of the `k`-th (from 0) set bit of `x`, which has more than
/// `k`: byte-wise prefix popcounts find the byte, a short loop the bit.
#[inline]
pub fn select_in_word(x: u64, k: u32) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut s = x - ((x >> 1) & 0x5555_5555_5555_5555);
    s = (s & 0x3333_3333_3333_3333) + ((s >> 2) & 0x3333_3333_3333_3333);
    s = (s + (s >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // Byte b of `prefix`: the 1s in bytes 0..=b (at most 64, so no carries).
    let prefix = s.wrapping_mul(ONES);
    // High bit of byte b set where prefix_b ≤ k: the bytes before the bit's.
    let before_bytes = (((u64::from(k) * ONES) | HIGH) - prefix) & HIGH;
    let b = before_bytes.count_ones();
    let before = if b == 0 {
        0
    } else {
        (prefix >> (8 * (b - 1))) as u32 & 0xff
    };
    let byte = (x >> (8 * b)) as usize & 0xff;
    8 * b + u32::from(SELECT_IN_BYTE[byte * 8 + (k - before) as usize])
}

/// `SELECT_IN_BYTE[b * 8 + k]`: the position of the `k`-th set bit of byte
/// `b` (a table, as a loop's trip count would be a branch to mispredict).
static SELECT_IN_BYTE: [u8; 256 * 8] = {
    let mut t = [0u8; 256 * 8];
    let mut b = 0;
    while b < 256 {
        let (mut bit, mut k) = (0, 0);
        while bit < 8 {
            if b >> bit & 1 == 1 {
                t[b * 8 + k] = bit as u8;
                k += 1;
            }
            bit += 1;
        }
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn positions_match_the_select_iterators() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in [0u64, 1, 63, 64, 65, 200, 1000] {
            let words: Vec<u64> = (0..len.div_ceil(64)).map(|_| rng.random()).collect();
            let mut v = vers_vecs::BitVec::from_limbs(&words);
            v.drop_last(v.len() - len as usize);
            let rs = vers_vecs::RsVec::from_bit_vec(v);
            let ones: Vec<usize> = positions(&words, len, true).collect();
            let zeros: Vec<usize> = positions(&words, len, false).collect();
            assert_eq!(ones, rs.iter1().collect::<Vec<_>>(), "ones of {len} bits");
            assert_eq!(zeros, rs.iter0().collect::<Vec<_>>(), "zeros of {len} bits");
        }
    }

    fn naive_select(x: u64, k: u32) -> u32 {
        (0..64)
            .filter(|&b| x >> b & 1 == 1)
            .nth(k as usize)
            .unwrap()
    }

    #[test]
    fn select_in_word_matches_a_scan() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut words = vec![u64::MAX, 1, 1 << 63, 0x8000_0000_0000_0001];
        words.extend((0..2000).map(|_| rng.random::<u64>() & rng.random::<u64>()));
        for x in words.into_iter().filter(|&x| x != 0) {
            for k in 0..x.count_ones() {
                assert_eq!(select_in_word(x, k), naive_select(x, k), "{x:#x} {k}");
            }
        }
    }

    /// `select_one` against vers-vecs' `select1` on every 1 of vectors
    /// dense, sparse and with gaps long enough for the fallback.
    #[test]
    fn sampled_select_matches_select1() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let fell_back = std::cell::Cell::new(0usize);
        for (len, density) in [
            (70u64, 0.5),
            (5000, 0.5),
            (5000, 0.97),
            (20000, 0.01),
            (3000, 0.002),
        ] {
            let bits: Vec<bool> = (0..len).map(|_| rng.random_bool(density)).collect();
            let mut words = vec![0u64; len.div_ceil(64) as usize];
            for (i, &b) in bits.iter().enumerate() {
                words[i / 64] |= u64::from(b) << (i % 64);
            }
            let mut v = vers_vecs::BitVec::from_limbs(&words);
            v.drop_last(v.len() - len as usize);
            let rs = vers_vecs::RsVec::from_bit_vec(v);
            let samples: Vec<u64> = positions(&words, len, true)
                .step_by(ONE_SAMPLE_EVERY)
                .map(|p| p as u64)
                .collect();
            for k in 0..rs.rank1(len as usize) {
                let fallback = |k| {
                    fell_back.set(fell_back.get() + 1);
                    rs.select1(k)
                };
                let got = select_one(&words, &samples, k, fallback);
                assert_eq!(
                    got,
                    rs.select1(k) as u64,
                    "{len} bits at {density}: the {k}-th 1"
                );
            }
        }
        assert!(fell_back.get() > 0, "the sparse vectors take the fallback");
    }

    /// LOUDS bits of a tree given each node's degree (breadth-first).
    fn louds(degrees: &[u32]) -> (Vec<u64>, u64, Vec<u64>) {
        let mut bits = Vec::new();
        let mut starts = Vec::new();
        for &d in degrees {
            starts.push(bits.len() as u64);
            bits.extend(std::iter::repeat_n(true, d as usize));
            bits.push(false);
        }
        let mut words = vec![0u64; bits.len().div_ceil(64) + 1];
        for (i, &b) in bits.iter().enumerate() {
            words[i / 64] |= u64::from(b) << (i % 64);
        }
        words.truncate(bits.len().div_ceil(64));
        (words, bits.len() as u64, starts)
    }

    #[test]
    fn starts_and_degrees_of_sparse_and_dense_blocks() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // A wide root, a dense layer, then sparse layers and leaves.
        let mut degrees = vec![300u32];
        degrees.extend((0..300).map(|_| rng.random_range(5..40)));
        let below: u32 = degrees[1..].iter().sum();
        degrees.extend((0..below).map(|_| rng.random_range(0..3)));
        let leaves: u32 = degrees[301..].iter().sum();
        degrees.extend(std::iter::repeat_n(0, leaves as usize));
        let (words, len, starts) = louds(&degrees);
        assert_eq!(Some(len), super::super::louds_bits(degrees.len() as u64));
        let s = DegreeStarts::build(&words, len, degrees.len() as u64).unwrap();
        assert!(!s.dense.is_empty(), "the dense layer gets tables");
        assert!(
            s.dense.len() < s.blocks.len(),
            "the sparse layers are scanned"
        );
        for (n, (&start, &d)) in starts.iter().zip(&degrees).enumerate() {
            assert_eq!(s.start(&words, n), start, "start of node {n}");
            assert_eq!(ones_from(&words, start), u64::from(d), "degree of node {n}");
        }
    }

    #[test]
    fn a_node_count_the_bits_do_not_describe_is_refused() {
        let (words, len, _) = louds(&[2, 0, 0]);
        assert!(DegreeStarts::build(&words, len, 3).is_ok());
        // Fewer 0s than the node count claims.
        assert!(DegreeStarts::build(&words, 3, 2).is_err());
    }
}
