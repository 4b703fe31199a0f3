//! Fixtures shared by the `sidx bench …` commands and the Criterion benches
//! (`benches/index.rs` includes this file): synthetic long-tailed SIDs packed
//! into `u64` keys, and an index built from them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Synthetic long-tailed SIDs for index benchmarks, as sorted packed keys:
/// up to four big-endian `u16` token ids in a `u64`, zero-padded (a real
/// token past the first is never 0), layer-tagged for a `3 × m` layout.
/// Layer 1 follows Zipf(0.8), layer 2 Zipf(1.2) (the hourglass waist), layer
/// 3 is uniform; with `drop_top_k`, items behind the K most frequent layer-2
/// codes lose their layer-2 token (the paper's variable-length SIDs).
/// Shared SIDs get a disambiguation token, so keys are unique.
pub fn long_tailed_sids(n: usize, m: u16, drop_top_k: Option<usize>, seed: u64) -> Vec<u64> {
    let tail = LongTail::new(m, drop_top_k, seed);
    let mut keys: Vec<u64> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .flat_map_iter(|chunk| tail.chunk(chunk, CHUNK.min(n - chunk * CHUNK)))
        .collect();
    keys.par_sort_unstable();
    // Disambiguate runs of equal keys with a token after the last one.
    let mut i = 0;
    while i < keys.len() {
        let mut j = i + 1;
        while j < keys.len() && keys[j] == keys[i] {
            j += 1;
        }
        if j - i > 1 {
            for (code, k) in keys[i..j].iter_mut().enumerate() {
                *k = tail.disambiguated(*k, code);
            }
        }
        i = j;
    }
    keys.par_sort_unstable();
    keys.dedup();
    keys
}

/// The distributions of [`long_tailed_sids`], drawn a chunk at a time.
pub struct LongTail {
    z1: Vec<f64>,
    z2: Vec<f64>,
    m: u32,
    dropped: u32,
    seed: u64,
}

impl LongTail {
    pub fn new(m: u16, drop_top_k: Option<usize>, seed: u64) -> Self {
        let m32 = m as u32;
        assert!(
            3 * m32 + 1 < u16::MAX as u32,
            "3 × m token ids must fit u16"
        );
        let zipf = |s: f64| {
            let mut cum = Vec::with_capacity(m as usize);
            let mut t = 0.0;
            for k in 0..m as usize {
                t += 1.0 / ((k + 1) as f64).powf(s);
                cum.push(t);
            }
            cum
        };
        Self {
            z1: zipf(0.8),
            z2: zipf(1.2),
            m: m32,
            // Layer-2 codes are ranked by frequency in code order, so the top K are codes 0..K.
            dropped: drop_top_k.unwrap_or(0) as u32,
            seed,
        }
    }

    /// The keys (before disambiguation) of `rows` SIDs of chunk `chunk`:
    /// each chunk of [`CHUNK`] rows is its own random stream.
    pub fn chunk(&self, chunk: usize, rows: usize) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(chunk as u64 + 1);
        let draw = |rng: &mut ChaCha8Rng, cum: &[f64]| {
            let u = rng.random::<f64>() * cum[cum.len() - 1];
            cum.partition_point(|&x| x < u).min(cum.len() - 1) as u32
        };
        let m = self.m;
        (0..rows)
            .map(|_| {
                let a = draw(&mut rng, &self.z1);
                let b = draw(&mut rng, &self.z2);
                let c = rng.random_range(0..m);
                let t3 = (2 * m + c) as u64;
                if b < self.dropped {
                    (a as u64) << 48 | t3 << 32
                } else {
                    (a as u64) << 48 | ((m + b) as u64) << 32 | t3 << 16
                }
            })
            .collect()
    }

    /// `key` with disambiguation code `code` appended (codes beyond the
    /// 16-bit token ids saturate).
    pub fn disambiguated(&self, key: u64, code: usize) -> u64 {
        let code = (3 * self.m as u64 + code as u64).min(u16::MAX as u64);
        key | code << (48 - 16 * key_len(key))
    }
}

/// Rows of one random stream of [`LongTail`] (fixed, so keys do not depend on threads).
pub const CHUNK: usize = 1024;

/// Tokens in a packed key (1 to 4).
pub fn key_len(key: u64) -> usize {
    (1..4)
        .find(|&i| (key >> (48 - 16 * i)) & 0xffff == 0)
        .unwrap_or(4)
}

/// The token ids of a packed key.
pub fn key_tokens(key: u64, out: &mut Vec<u16>) {
    out.clear();
    out.extend((0..key_len(key)).map(|i| (key >> (48 - 16 * i)) as u16));
}

/// The item id of the `i`-th of `n` SIDs: `0..n` in an order unrelated to
/// the SIDs' (an affine bijection), as catalog row ids are; with `prefix`,
/// a string id such as `sku-123`.
pub fn item_id(i: usize, n: usize, prefix: &str, out: &mut String) {
    // 1_000_003 is prime and above the catalogs whose size it could divide.
    let n = n.max(1) as u128;
    let id = ((i as u128 * 1_000_003 + 7) % n) as u64;
    out.clear();
    std::fmt::Write::write_fmt(out, format_args!("{prefix}{id}")).expect("to a String");
}

/// Builds and publishes an index of packed keys (`long_tailed_sids`) for a
/// `3 × m` layout, in `format_version`, items named by [`item_id`].
pub fn build_index(
    store: &sidx::index::IndexStore,
    keys: &[u64],
    m: u16,
    source: &str,
    format_version: u32,
    id_prefix: &str,
) -> Result<sidx::index::BuildSummary, sidx::index::IndexError> {
    use sidx::index::{Manifest, build_sorted};
    use sidx::sid::{CollisionMode, Layout};
    let layout = Layout::new(vec![m as u32; 3])?;
    let mut template = Manifest::new(&layout, CollisionMode::Disambiguate);
    template.source = source.to_owned();
    template.format_version = format_version;
    build_sorted(store, template, |builder| {
        let mut tokens = Vec::with_capacity(4);
        let mut id = String::new();
        for (i, &k) in keys.iter().enumerate() {
            key_tokens(k, &mut tokens);
            item_id(i, keys.len(), id_prefix, &mut id);
            builder.push(&tokens, &id)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    // The `use` sits in the test: `benches/index.rs` includes this file
    // without the test harness, where the test (and an outer `use`) is dropped.
    #[test]
    fn long_tailed_sids_are_sorted_unique_and_variable() {
        use super::*;
        let keys = long_tailed_sids(20_000, 64, Some(8), 1);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert!(keys.len() == 20_000, "disambiguation keeps every item");
        let mut t = Vec::new();
        let (mut two, mut four) = (0, 0);
        for &k in &keys {
            key_tokens(k, &mut t);
            assert!(t[0] < 64 && t[1] >= 64, "layer-tagged: {t:?}");
            two += usize::from(t.len() == 2);
            four += usize::from(t.len() == 4 || (t.len() == 3 && t[2] >= 192));
        }
        assert!(two > 0, "some items lost their layer-2 token");
        assert!(four > 0, "shared SIDs got a disambiguation token");
    }
}
