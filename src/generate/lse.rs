//! The log-sum-exp of a logits row — the one pass over a whole vocabulary
//! that scoring the SID tokens needs — written so the compiler vectorizes
//! it: lane-wise maxima and sums, and an `exp` built from adds, multiplies
//! and a float-to-int conversion (no libm call, no branch).
//!
//! On 160 rows of 151,936 logits (Qwen2's vocabulary; one step of batch 8 ×
//! beam 20) two passes with `f32::exp` take 3.5 ns per logit; this form
//! 1.4 (`benches/scoring.rs`, BENCHMARKS.md).

const LANES: usize = 16;
/// Elements per block: the block's maximum is taken, then its sum of
/// exponentials while it is still in L1 — one pass over the row in memory.
const BLOCK: usize = 2048;

/// `ln Σ exp(x)` over `row`, read through `f32_of`, accumulated in f32.
pub fn log_sum_exp<T>(row: &[T], f32_of: impl Fn(&T) -> f32) -> f32 {
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    for block in row.chunks(BLOCK) {
        let block_max = lane_max(block, &f32_of);
        if block_max == f32::NEG_INFINITY {
            continue; // every logit masked
        }
        if !block_max.is_finite() {
            return f32::NAN; // an inf logit: no distribution
        }
        let new_max = max.max(block_max);
        let rescale = if max == f32::NEG_INFINITY {
            0.0
        } else {
            exp_nonpositive(max - new_max)
        };
        sum = sum * rescale + lane_sum_exp(block, new_max, &f32_of);
        max = new_max;
    }
    if max == f32::NEG_INFINITY {
        return max; // empty, or every logit masked
    }
    max + sum.ln()
}

fn lane_max<T>(block: &[T], f32_of: impl Fn(&T) -> f32) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = block.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, x) in lanes.iter_mut().zip(chunk) {
            // Not f32::max, whose NaN rule keeps the compiler from using
            // the vector max; a NaN logit still makes the sum NaN.
            let x = f32_of(x);
            *m = if x > *m { x } else { *m };
        }
    }
    tail.iter()
        .map(f32_of)
        .chain(lanes)
        .fold(f32::NEG_INFINITY, f32::max)
}

fn lane_sum_exp<T>(block: &[T], max: f32, f32_of: impl Fn(&T) -> f32) -> f32 {
    let mut sums = [0f32; LANES];
    let chunks = block.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (s, x) in sums.iter_mut().zip(chunk) {
            *s += exp_nonpositive(f32_of(x) - max);
        }
    }
    sums.iter().sum::<f32>()
        + tail
            .iter()
            .map(|x| exp_nonpositive(f32_of(x) - max))
            .sum::<f32>()
}

/// `e^x` for `x ≤ 0`, relative error below 2e-7: `x = i·ln 2 + r` with `i`
/// the nearest integer to `x·log2 e` (adding 1.5·2²³ rounds it into the
/// mantissa) and
/// `r` in [-½ ln 2, ½ ln 2] (ln 2 in two parts, so `r` keeps its precision),
/// `e^r` by its degree-7 Taylor polynomial, `2^i` by building the float's
/// exponent. Below -87 (where f32 `e^x` turns denormal) it returns `e^-87`,
/// which a sum holding at least one `e^0` cannot notice.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23
    const LN2_HI: f32 = 0.693_145_75; // ln 2 to 16 bits: i · LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 - LN2_HI
    let x = if x > -87.0 { x } else { -87.0 };
    let biased = x * std::f32::consts::LOG2_E + ROUND;
    let i = biased - ROUND;
    // The rounded integer sits in the mantissa's low bits: no float-to-int
    // conversion (which the compiler would not vectorize).
    let n = biased.to_bits().wrapping_sub(ROUND.to_bits());
    let r = (x - i * LN2_HI) - i * LN2_LO;
    const C: [f32; 8] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
    let p = C[0]
        + r * (C[1] + r * (C[2] + r * (C[3] + r * (C[4] + r * (C[5] + r * (C[6] + r * C[7]))))));
    p * f32::from_bits(n.wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(row: &[f32]) -> f64 {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        max + row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln()
    }

    #[test]
    fn exp_is_within_2e_7_relative_on_its_whole_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            worst = worst.max(((exp_nonpositive(x) as f64) - want).abs() / want);
            x += 0.001_3;
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn log_sum_exp_equals_the_f64_formula() {
        let mut seed = 12345u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 40.0
        };
        for len in [1, 15, 16, 17, 133, 1000, 151_936] {
            let row: Vec<f32> = (0..len).map(|_| next()).collect();
            let got = log_sum_exp(&row, |&x| x) as f64;
            let want = exact(&row);
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1.0),
                "{len}: {got} vs {want}"
            );
        }
        // Masked logits (-inf) add nothing; an all -inf row stays -inf.
        let row = [0.0, f32::NEG_INFINITY, 0.0];
        assert!((log_sum_exp(&row, |&x| x) - 2f32.ln()).abs() < 1e-6);
        assert_eq!(
            log_sum_exp(&[f32::NEG_INFINITY; 3], |&x| x),
            f32::NEG_INFINITY
        );
    }
}
