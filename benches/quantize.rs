//! Criterion benches of the quantizer's hot paths: nearest-centroid search
//! (GEMM formulation vs the direct loop) and greedy / beam RQ encoding.
//! The faiss comparison is `sidx bench quantize` (it needs Python).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sidx::progress::Progress;
use sidx::quantize::{Codebook, ResidualQuantizer, TrainConfig, sq_dist};
use sidx::synth::{self, SynthConfig};

const DIM: usize = 128;

fn data(items: usize) -> Vec<f32> {
    synth::generate(&SynthConfig {
        items,
        dim: DIM,
        ..SynthConfig::default()
    })
}

fn nearest(c: &mut Criterion) {
    let n = 16_384;
    let x = data(n);
    let cb = Codebook::new(data(256), DIM);
    let mut g = c.benchmark_group("nearest_centroid_256");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("gemm", |b| b.iter(|| black_box(cb.assign(black_box(&x)))));
    g.bench_function("direct_loop_1_thread", |b| {
        b.iter(|| {
            let codes: Vec<usize> = x
                .chunks_exact(DIM)
                .map(|row| {
                    (0..cb.k())
                        .map(|j| (j, sq_dist(row, cb.centroid(j))))
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .map_or(0, |(j, _)| j)
                })
                .collect();
            black_box(codes)
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let n = 20_000;
    let x = data(n);
    let cfg = TrainConfig {
        layers: 3,
        codebook_size: 256,
        train_sample: None,
        kmeans_iters: 5,
        ..TrainConfig::default()
    };
    let rq = ResidualQuantizer::train(&x, DIM, &cfg, &Progress::hidden()).unwrap();
    let mut g = c.benchmark_group("rq_encode_3x256");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    for beam in [1, 4] {
        g.bench_with_input(BenchmarkId::new("beam", beam), &beam, |b, &beam| {
            b.iter(|| black_box(rq.encode(&x, beam, &Progress::hidden())))
        });
    }
    g.finish();
}

criterion_group!(benches, nearest, encode);
criterion_main!(benches);
