//! Criterion benches of the index hot paths on 1M synthetic long-tailed
//! 3 × 4096 SIDs: a beam step (`children` + `child`), a next-token query from
//! the root, an item → SID lookup, and a 100k-SID build — with the
//! `constraint-decoding-trie` crate's beam step beside ours. The table with
//! Python peers is `sidx bench index`.

use std::hint::black_box;

use constraint_decoding_trie::transition::build_static_index;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sidx::index::IndexStore;

#[path = "../src/bench/fixtures.rs"]
mod fixtures;
use fixtures::{key_tokens, long_tailed_sids};

const M: u16 = 4096;

fn build(keys: &[u64], root: &std::path::Path) -> IndexStore {
    let store = IndexStore::new(root);
    fixtures::build_index(&store, keys, M, "bench", 1, "").unwrap();
    store
}

fn sample(keys: &[u64], n: usize) -> Vec<Vec<u16>> {
    let step = keys.len() / n;
    let mut t = Vec::new();
    (0..n)
        .map(|i| {
            key_tokens(keys[(i * step * 7919) % keys.len()], &mut t);
            t.clone()
        })
        .collect()
}

fn queries(c: &mut Criterion) {
    let keys = long_tailed_sids(1_000_000, M, None, 7);
    let dir = tempfile::tempdir().unwrap();
    let index = build(&keys, dir.path()).open_current().unwrap();
    let walks = sample(&keys, 4096);
    let steps: usize = walks.iter().map(Vec::len).sum();

    let mut g = c.benchmark_group("beam_step_1M");
    g.throughput(Throughput::Elements(steps as u64));
    g.bench_function("sidx", |b| {
        b.iter(|| {
            for w in &walks {
                let mut node = index.root();
                for &t in w {
                    black_box(index.children(node).len());
                    node = index.child(node, t).unwrap();
                }
            }
        })
    });
    let constraints: Vec<Vec<u32>> = {
        let mut v: Vec<Vec<u32>> = keys
            .iter()
            .map(|&k| {
                let mut t = Vec::new();
                key_tokens(k, &mut t);
                vec![t[0] as u32, (t[1] - M) as u32, (t[2] - 2 * M) as u32]
            })
            .collect();
        v.dedup();
        v
    };
    let peer = build_static_index(&constraints, M as u32, 3, 2);
    let peer_walks: Vec<Vec<u32>> = walks
        .iter()
        .map(|w| vec![w[0] as u32, (w[1] - M) as u32, (w[2] - 2 * M) as u32])
        .collect();
    g.bench_function("constraint-decoding-trie", |b| {
        b.iter(|| {
            for w in &peer_walks {
                let mut node = 0;
                for &t in w {
                    black_box(peer.sparse.children(node).len());
                    node = peer.sparse.next_node(node, t).unwrap();
                }
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("queries_1M");
    g.throughput(Throughput::Elements(walks.len() as u64));
    g.bench_function("next_tokens_depth2", |b| {
        b.iter(|| {
            for w in &walks {
                black_box(index.next_tokens(&w[..2]).allowed.len());
            }
        })
    });
    let ids: Vec<String> = (0..walks.len())
        .map(|i| ((i * 7919) % keys.len()).to_string())
        .collect();
    g.bench_function("item_to_sid", |b| {
        b.iter(|| {
            for id in &ids {
                black_box(index.sid(id));
            }
        })
    });
    g.finish();
}

fn building(c: &mut Criterion) {
    let keys = long_tailed_sids(100_000, M, Some(400), 7);
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("sidx_100k_variable_length", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            black_box(build(&keys, dir.path()));
        })
    });
    g.finish();
}

criterion_group!(benches, queries, building);
criterion_main!(benches);
