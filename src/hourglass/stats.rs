//! Concentration statistics of one layer's token counts.

use serde::{Deserialize, Serialize};

/// Statistics of one quantizer layer (JSON keys are part of the report format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// 1-based layer.
    pub layer: u8,
    pub codebook_size: u32,
    /// Items that carry a token of this layer (fewer than all when it was dropped for some).
    pub items: u64,
    /// Codes used by at least one item.
    pub used: u32,
    /// `used / codebook_size`.
    pub utilization: f64,
    /// Shannon entropy of the code distribution, in bits.
    pub entropy: f64,
    /// `entropy / log2(codebook_size)`: 1 for uniform use of the codebook.
    pub normalized_entropy: f64,
    /// Gini coefficient of the counts of all `codebook_size` codes (0 = equal, → 1 = one code).
    pub gini: f64,
    /// Population standard deviation of the counts of all codes.
    pub std: f64,
    /// Share of this layer's items on the most frequent code.
    pub top1_share: f64,
    /// Share of this layer's items on the most frequent 1% of codes (at least one code).
    pub top1pct_share: f64,
}

impl LayerStats {
    /// Statistics of `counts[code]`; codes beyond `counts.len()` count 0.
    pub fn from_counts(layer: u8, codebook_size: u32, counts: &[u64]) -> Self {
        let m = codebook_size.max(counts.len() as u32);
        let mut all = counts.to_vec();
        all.resize(m as usize, 0);
        let items: u64 = all.iter().sum();
        let used = all.iter().filter(|&&c| c > 0).count() as u32;
        let entropy = entropy_bits(&all);
        let mut sorted = all.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top_n = (m as usize).div_ceil(100).max(1);
        let share = |n: u64| {
            if items == 0 {
                0.0
            } else {
                n as f64 / items as f64
            }
        };
        Self {
            layer,
            codebook_size: m,
            items,
            used,
            utilization: used as f64 / m as f64,
            entropy,
            normalized_entropy: if m > 1 {
                entropy / (m as f64).log2()
            } else {
                0.0
            },
            gini: gini(&all),
            std: std_dev(&all),
            top1_share: share(sorted[0]),
            top1pct_share: share(sorted[..top_n].iter().sum()),
        }
    }
}

/// Shannon entropy (bits) of the distribution given by `counts`.
pub fn entropy_bits(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let t = total as f64;
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / t;
            p * p.log2()
        })
        .sum::<f64>()
}

/// Gini coefficient `Σ_i Σ_j |x_i − x_j| / (2 n² μ)`, zeros included.
pub fn gini(counts: &[u64]) -> f64 {
    let n = counts.len();
    let total: u64 = counts.iter().sum();
    if n == 0 || total == 0 {
        return 0.0;
    }
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    // With ascending x and 1-based rank i: G = 2 Σ i·x_i / (n Σ x) − (n + 1) / n.
    let weighted: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, &x)| (i + 1) as f64 * x as f64)
        .sum();
    let n = n as f64;
    2.0 * weighted / (n * total as f64) - (n + 1.0) / n
}

/// Population standard deviation.
pub fn std_dev(counts: &[u64]) -> f64 {
    if counts.is_empty() {
        return 0.0;
    }
    let n = counts.len() as f64;
    let mean = counts.iter().sum::<u64>() as f64 / n;
    (counts
        .iter()
        .map(|&c| (c as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn uniform_counts() {
        let s = LayerStats::from_counts(1, 8, &[5; 8]);
        assert!(close(s.gini, 0.0));
        assert!(close(s.entropy, 3.0), "log2 8 = 3 bits");
        assert!(close(s.normalized_entropy, 1.0));
        assert!(close(s.std, 0.0));
        assert_eq!((s.used, s.items), (8, 40));
        assert!(close(s.utilization, 1.0));
        assert!(close(s.top1_share, 1.0 / 8.0));
        assert!(
            close(s.top1pct_share, 1.0 / 8.0),
            "1% of 8 codes rounds up to 1 code"
        );
    }

    #[test]
    fn all_mass_on_one_code() {
        let m = 16u32;
        let s = LayerStats::from_counts(2, m, &[0, 0, 32]);
        assert!(close(s.gini, 1.0 - 1.0 / m as f64), "gini {}", s.gini);
        assert!(close(s.entropy, 0.0));
        assert!(close(s.top1_share, 1.0));
        assert_eq!(s.used, 1);
        assert!(close(s.utilization, 1.0 / 16.0));
        // Counts: one 32, fifteen 0; mean 2; variance (30² + 15·2²)/16 = 60.
        assert!(close(s.std, 60f64.sqrt()));
    }

    #[test]
    fn worked_example() {
        // Counts 1, 1, 2: p = ¼, ¼, ½ → H = 1.5 bits; Gini = Σ|xi−xj| / (2n²μ) = 4 / (2·9·4/3) = 1/6.
        let s = LayerStats::from_counts(1, 3, &[1, 2, 1]);
        assert!(close(s.entropy, 1.5));
        assert!(close(s.normalized_entropy, 1.5 / 3f64.log2()));
        assert!(close(s.gini, 1.0 / 6.0), "gini {}", s.gini);
        assert!(close(s.top1_share, 0.5));
    }
}
