//! Criterion bench of sliced scoring's one full-row pass: the log-sum-exp
//! of a logits row, over one step of batch 8 × beam 20 (160 rows) of an LLM
//! vocabulary (Qwen2's 151,936) and of the fixture models' 133 tokens —
//! sidx's vectorizable form against the plain two passes with `f32::exp`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sidx::generate::log_sum_exp;

fn plain(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln()
}

fn lse(c: &mut Criterion) {
    let rows = 160;
    let mut g = c.benchmark_group("log_sum_exp_160_rows");
    for vocab in [133usize, 151_936] {
        let mut seed = 7u64;
        let logits: Vec<f32> = (0..rows * vocab)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 30.0
            })
            .collect();
        g.throughput(Throughput::Elements((rows * vocab) as u64));
        g.bench_with_input(BenchmarkId::new("sidx", vocab), &logits, |b, l| {
            b.iter(|| {
                let s: f32 = l.chunks_exact(vocab).map(|r| log_sum_exp(r, |&x| x)).sum();
                black_box(s)
            })
        });
        g.bench_with_input(BenchmarkId::new("plain_f32_exp", vocab), &logits, |b, l| {
            b.iter(|| black_box(l.chunks_exact(vocab).map(plain).sum::<f32>()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = lse
}
criterion_main!(benches);
