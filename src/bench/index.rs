//! `sidx bench index`: build, size, open and query speed of the SID index on
//! synthetic long-tailed 3 × 4096 SIDs, with peers in the same run: the
//! `constraint-decoding-trie` crate (feature `bench-peers`, fixed-length
//! SIDs only) and, through `benches/trie_peers.py`, a GENRE-style Python dict
//! trie and `marisa-trie`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::Deserialize;

use super::fixtures::{key_tokens, long_tailed_sids};
use sidx::index::IndexStore;
use sidx::progress::Progress;

#[derive(Args)]
pub struct IndexBench {
    /// Catalog sizes (SIDs), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    sids: Vec<usize>,
    /// Codebook size of each of the 3 layers.
    #[arg(long, default_value_t = 4096)]
    codebook_size: u16,
    /// K of the variable-length variant (drop layer 2 behind the top K codes).
    #[arg(long, default_value_t = 400)]
    top_k: usize,
    /// Random SIDs walked / prefixes queried per measurement.
    #[arg(long, default_value_t = 200_000)]
    samples: usize,
    /// Python with marisa-trie (scripts/setup-python.sh).
    #[arg(long, env = "SIDX_PYTHON", default_value = ".venv/bin/python")]
    python: PathBuf,
    /// The Python side of the benchmark.
    #[arg(long, default_value = "benches/trie_peers.py")]
    peers_script: PathBuf,
    /// Largest catalog the Python peers are run on (dict tries grow large).
    #[arg(long, default_value_t = 10_000_000)]
    python_max: usize,
    /// Skip every peer (sidx only, e.g. for the 100M-SID run).
    #[arg(long)]
    no_peers: bool,
    /// Index format versions of the sidx rows, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    formats: Vec<u32>,
    /// Skip the update measurement (a full rewrite of each version).
    #[arg(long)]
    no_updates: bool,
    /// Where the index versions are built (default: a temporary directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
}

/// One row of the table.
#[derive(Debug, Default, Deserialize)]
struct Row {
    name: String,
    sids: usize,
    build_seconds: f64,
    /// From a SID file to a published version (sidx rows).
    #[serde(default)]
    file_seconds: Option<f64>,
    bytes: f64,
    #[serde(default)]
    open_ms: Option<f64>,
    #[serde(default)]
    ns_per_step: Option<f64>,
    /// Beam steps of 256 walks advanced in lockstep, as beam search does.
    #[serde(default)]
    ns_per_lockstep: Option<f64>,
    ns_per_next_tokens: f64,
    /// Bytes per SID of each file (sidx rows).
    #[serde(skip)]
    breakdown: String,
}

pub fn run(b: &IndexBench, progress: &Progress) -> Result<()> {
    let work = match &b.workdir {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("sidx-bench-index-{}", std::process::id())),
    };
    let mut rows = Vec::new();
    for &n in &b.sids {
        for variable in [false, true] {
            let label = if variable {
                format!("top{}", b.top_k)
            } else {
                "fixed".into()
            };
            progress.note(&format!("{n} SIDs ({label}): generating"));
            let keys = long_tailed_sids(n, b.codebook_size, variable.then_some(b.top_k), 7);
            let sample = sample_keys(&keys, b.samples);
            let variants = SIDX_VARIANTS.iter().filter(|(f, _)| b.formats.contains(f));
            for &(format, prefix) in variants {
                let root = work.join(format!("{n}-{label}-v{format}{prefix}"));
                rows.push(bench_sidx(
                    &keys, &sample, b, &root, &label, format, prefix, progress,
                )?);
                let _ = std::fs::remove_dir_all(&root);
            }
            if b.no_peers {
                continue;
            }
            #[cfg(feature = "bench-peers")]
            if !variable {
                rows.push(peers::static_trie(&keys, &sample, b.codebook_size));
            }
            if n <= b.python_max {
                rows.extend(python_peers(&keys, &sample, b, &work, &label)?);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    println!(
        "| {:<40} | {:>10} | {:>8} | {:>10} | {:>12} | {:>9} | {:>8} | {:>12} | {:>15} | {:>14} |",
        "structure",
        "SIDs",
        "build s",
        "SIDs/s",
        "file SIDs/s",
        "bytes/SID",
        "open ms",
        "ns/beam step",
        "ns/step batched",
        "ns/next_tokens"
    );
    println!("|{}|", ["---"; 10].join("|"));
    for r in &rows {
        println!(
            "| {:<40} | {:>10} | {:>8.2} | {:>10.0} | {:>12} | {:>9.2} | {:>8} | {:>12} | {:>15} | {:>14.1} |",
            r.name,
            r.sids,
            r.build_seconds,
            r.sids as f64 / r.build_seconds,
            r.file_seconds
                .map_or("—".into(), |s| format!("{:.0}", r.sids as f64 / s)),
            r.bytes / r.sids as f64,
            r.open_ms.map_or("—".into(), |v| format!("{v:.1}")),
            r.ns_per_step.map_or("—".into(), |v| format!("{v:.1}")),
            r.ns_per_lockstep.map_or("—".into(), |v| format!("{v:.1}")),
            r.ns_per_next_tokens
        );
    }
    for r in rows.iter().filter(|r| !r.breakdown.is_empty()) {
        println!(
            "{} at {} SIDs, bytes per SID: {}",
            r.name, r.sids, r.breakdown
        );
    }
    println!(
        "peak RSS of this process: {:.0} MiB",
        super::util::proc_status_kib("self", "VmHWM").unwrap_or(f64::NAN) / 1024.0
    );
    Ok(())
}

fn sample_keys(keys: &[u64], n: usize) -> Vec<u64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut s: Vec<u64> = keys
        .choose_multiple(&mut rng, n.min(keys.len()))
        .copied()
        .collect();
    s.shuffle(&mut rng);
    s
}

/// The sidx rows: format version and item-id prefix (integer ids without one).
const SIDX_VARIANTS: [(u32, &str); 3] = [(1, ""), (2, ""), (2, "sku-")];

#[allow(clippy::too_many_arguments)]
fn bench_sidx(
    keys: &[u64],
    sample: &[u64],
    b: &IndexBench,
    root: &std::path::Path,
    label: &str,
    format: u32,
    id_prefix: &str,
    progress: &Progress,
) -> Result<Row> {
    let _ = std::fs::remove_dir_all(root);
    let store = IndexStore::new(root);
    progress.note(&format!("sidx v{format}: building {} SIDs", keys.len()));
    let summary = super::fixtures::build_index(
        &store,
        keys,
        b.codebook_size,
        &format!("synthetic {label}"),
        format,
        id_prefix,
    )?;
    let t0 = Instant::now();
    let index = store.open_current()?;
    let open_ms = t0.elapsed().as_secs_f64() * 1e3;
    let n = keys.len() as f64;
    let breakdown = index
        .section_bytes()
        .iter()
        .map(|(name, bytes)| format!("{name} {:.2}", *bytes as f64 / n))
        .collect::<Vec<_>>()
        .join(", ")
        + &format!("; heap built at open {:.2}", index.heap_bytes() as f64 / n);

    let Lookups {
        ns_per_step,
        ns_per_lockstep,
        ns_per_next_tokens,
    } = measure_lookups(&index, sample)?;
    let version_bytes = index.manifest().bytes();
    drop(index);
    let file_seconds = bench_file_build(keys, b.codebook_size, root, format, id_prefix)?;
    let breakdown = if b.no_updates {
        breakdown
    } else {
        let update = bench_update(&store, keys.len(), b.codebook_size, id_prefix)?;
        format!(
            "{breakdown}; update with {UPDATE_ITEMS} upserts + {UPDATE_ITEMS} deletes: {update:.2} s (a {} MB version rewritten)",
            version_bytes / 1_000_000
        )
    };
    let ids = if id_prefix.is_empty() {
        "integer ids".to_owned()
    } else {
        format!("ids \"{id_prefix}…\"")
    };
    let name = match format {
        1 => format!("sidx v1 trie+fst, {ids} ({label})"),
        _ => format!("sidx v2 compact, {ids} ({label})"),
    };
    Ok(Row {
        name,
        sids: keys.len(),
        build_seconds: summary.seconds,
        bytes: summary.bytes as f64,
        file_seconds: Some(file_seconds),
        open_ms: Some(open_ms),
        ns_per_step: Some(ns_per_step),
        ns_per_lockstep: Some(ns_per_lockstep),
        ns_per_next_tokens,
        breakdown,
    })
}

/// Lookup times on an index, best of [`PASSES`].
pub struct Lookups {
    /// ns per beam step of one walk (`children` then `child`).
    pub ns_per_step: f64,
    /// ns per beam step of 256 walks in lockstep (`children_of_all`).
    pub ns_per_lockstep: f64,
    /// ns per `next_tokens` of a two-token prefix.
    pub ns_per_next_tokens: f64,
}

/// Walks and queries the sampled SID keys (each in the index) on `index`.
pub fn measure_lookups(index: &sidx::index::Index, sample: &[u64]) -> Result<Lookups> {
    let mut tokens = Vec::with_capacity(4);
    let ns_per_step = best_of(|| {
        let mut steps = 0usize;
        let t1 = Instant::now();
        for &k in sample {
            key_tokens(k, &mut tokens);
            let mut node = index.root();
            for &t in &tokens {
                black_box(index.children(node).len());
                node = index.child(node, t).context("a sampled SID is missing")?;
                steps += 1;
            }
            black_box(index.is_terminal(node));
        }
        Ok(t1.elapsed().as_nanos() as f64 / steps as f64)
    })?;
    let walks: Vec<Vec<u16>> = sample
        .iter()
        .map(|&k| {
            let mut t = Vec::new();
            key_tokens(k, &mut t);
            t
        })
        .collect();
    let ns_per_lockstep = best_of(|| lockstep_batched(&walks, index))?;
    let prefixes: Vec<[u16; 2]> = sample
        .iter()
        .map(|&k| [(k >> 48) as u16, (k >> 32) as u16])
        .collect();
    let ns_per_next_tokens = best_of(|| {
        let t2 = Instant::now();
        for p in &prefixes {
            black_box(index.next_tokens(p).allowed.len());
        }
        Ok(t2.elapsed().as_nanos() as f64 / prefixes.len() as f64)
    })?;
    Ok(Lookups {
        ns_per_step,
        ns_per_lockstep,
        ns_per_next_tokens,
    })
}

/// Seconds from a SID file to a published version, as `sidx index build
/// --sids FILE` runs (parse, sort, build, publish).
fn bench_file_build(
    keys: &[u64],
    m: u16,
    root: &std::path::Path,
    format: u32,
    id_prefix: &str,
) -> Result<f64> {
    let file = root.with_extension("tsv");
    write_sid_file(&file, keys, m, id_prefix)?;
    let store = IndexStore::new(&root.with_extension("from-file")).with_format_version(format);
    let t0 = Instant::now();
    sidx::index::build_from_sid_file(&store, &file, "bench SID file", None)?;
    let seconds = t0.elapsed().as_secs_f64();
    std::fs::remove_file(&file)?;
    std::fs::remove_dir_all(store.root())?;
    Ok(seconds)
}

/// Writes the SIDs of packed keys as a SID file (`3 × m` layout header),
/// items named by [`super::fixtures::item_id`], the lines in a scrambled order as a catalog
/// dump would list them.
fn write_sid_file(
    path: &std::path::Path,
    keys: &[u64],
    m: u16,
    id_prefix: &str,
) -> anyhow::Result<()> {
    use sidx::sid::{CollisionMode, DisplaySid, Layout, SidHeader};
    use std::io::Write;
    let layout = Layout::new(vec![m as u32; 3])?;
    let header = serde_json::to_string(&SidHeader::new(&layout, CollisionMode::Disambiguate))?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "#sidx {header}")?;
    let n = keys.len();
    // 7919 is prime: a stride coprime with n visits every line once.
    let stride = if n.is_multiple_of(7919) { 1 } else { 7919 };
    let (mut tokens, mut id, mut sid) = (Vec::new(), String::new(), Vec::new());
    for j in 0..n {
        let i = (j as u128 * stride as u128 % n as u128) as usize;
        super::fixtures::key_tokens(keys[i], &mut tokens);
        super::fixtures::item_id(i, n, id_prefix, &mut id);
        sid.clear();
        sid.extend(tokens.iter().map(|&t| layout.token(u32::from(t))));
        writeln!(w, "{id}\t{}", DisplaySid(&sid))?;
    }
    w.flush()?;
    Ok(())
}

/// Items upserted and deleted by the update measurement.
pub(super) const UPDATE_ITEMS: usize = 10_000;

/// Item numbers [`bench_update`] deletes (with repeats).
pub(super) fn update_deletes(n: usize) -> impl Iterator<Item = usize> {
    (0..UPDATE_ITEMS.min(n)).map(move |i| (i * 7919) % n)
}

/// Seconds to apply a catalog update (new SIDs for fresh items, deletes of
/// existing ones) to the version just built: a full streaming rewrite.
pub(super) fn bench_update(store: &IndexStore, n: usize, m: u16, id_prefix: &str) -> Result<f64> {
    use sidx::catalog::CatalogUpdate;
    use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable, Token};
    let layout = Layout::new(vec![m as u32; 3])?;
    let mut upserts = SidTable::new(SidHeader::new(&layout, CollisionMode::Disambiguate));
    let m = m as u32;
    for i in 0..UPDATE_ITEMS as u32 {
        let (a, b, c) = ((i * 7919) % m, (i * 104_729) % m, (i * 15_485_863) % m);
        // A fourth, disambiguation token keeps these SIDs clear of existing ones.
        let sid = [
            Token::new(1, a),
            Token::new(2, b),
            Token::new(3, c),
            Token::new(4, 9_000 + i % 1000),
        ];
        upserts.push(format!("{id_prefix}{}", n + i as usize), &sid);
    }
    let deletes = update_deletes(n).map(|i| format!("{id_prefix}{i}"));
    let mut deletes: Vec<String> = deletes.collect();
    deletes.sort();
    deletes.dedup();
    let t0 = Instant::now();
    CatalogUpdate {
        upsert_sids: Some(upserts),
        deletes,
        ..CatalogUpdate::default()
    }
    .apply(store)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Timed passes per measurement; the fastest is reported (this VM's
/// neighbours make single passes noisy).
const PASSES: usize = 3;

/// The smallest of [`PASSES`] timings.
fn best_of(mut pass: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..PASSES {
        best = best.min(pass()?);
    }
    Ok(best)
}

/// Walks 256 SIDs at a time in lockstep, as beam search steps its beams:
/// first every beam's allowed tokens (`children`), then every beam's move
/// (`child`); returns ns per beam step.
#[cfg(feature = "bench-peers")]
fn lockstep<N: Copy, T: Copy>(
    walks: &[Vec<T>],
    root: N,
    children: impl Fn(N) -> usize,
    child: impl Fn(N, T) -> Option<N>,
) -> Result<f64> {
    let mut steps = 0usize;
    let t0 = Instant::now();
    for group in walks.chunks(256) {
        let mut nodes = vec![root; group.len()];
        let depth = group.iter().map(Vec::len).max().unwrap_or(0);
        for d in 0..depth {
            for (node, w) in nodes.iter().zip(group) {
                if d < w.len() {
                    black_box(children(*node));
                }
            }
            for (node, w) in nodes.iter_mut().zip(group) {
                if let Some(&t) = w.get(d) {
                    *node = child(*node, t).context("a sampled SID is missing")?;
                    steps += 1;
                }
            }
        }
        black_box(&nodes);
    }
    Ok(t0.elapsed().as_nanos() as f64 / steps.max(1) as f64)
}

/// As [`lockstep`], with one `children_of_all` call per step for the
/// allowed tokens of every live walk, and each move taken from its answer
/// (`child_in`).
fn lockstep_batched(walks: &[Vec<u16>], index: &sidx::index::Index) -> Result<f64> {
    let (mut nodes, mut live, mut kids) = (Vec::new(), Vec::new(), Vec::new());
    let mut steps = 0usize;
    let t0 = Instant::now();
    for group in walks.chunks(256) {
        let mut at = vec![index.root(); group.len()];
        let depth = group.iter().map(Vec::len).max().unwrap_or(0);
        for d in 0..depth {
            live.clear();
            live.extend((0..group.len()).filter(|&i| d < group[i].len()));
            nodes.clear();
            nodes.extend(live.iter().map(|&i| at[i]));
            index.children_of_all(&nodes, &mut kids);
            for (&i, c) in live.iter().zip(&kids) {
                black_box(c.tokens().len());
                let moved = index.child_in(at[i], c, group[i][d]);
                at[i] = moved.context("a sampled SID is missing")?;
                steps += 1;
            }
        }
        black_box(&at);
    }
    Ok(t0.elapsed().as_nanos() as f64 / steps.max(1) as f64)
}

fn python_peers(
    keys: &[u64],
    sample: &[u64],
    b: &IndexBench,
    work: &std::path::Path,
    label: &str,
) -> Result<Vec<Row>> {
    std::fs::create_dir_all(work)?;
    let (kf, sf) = (work.join("keys.u64"), work.join("sample.u64"));
    std::fs::write(&kf, bytemuck::cast_slice::<u64, u8>(keys))?;
    std::fs::write(&sf, bytemuck::cast_slice::<u64, u8>(sample))?;
    let args = [
        "--keys".to_owned(),
        kf.to_string_lossy().into_owned(),
        "--sample".to_owned(),
        sf.to_string_lossy().into_owned(),
        "--label".to_owned(),
        label.to_owned(),
    ];
    super::util::python_peer(&b.python, &b.peers_script, &args)
}

#[cfg(feature = "bench-peers")]
mod peers {
    use super::*;
    use constraint_decoding_trie::transition::build_static_index;

    /// The STATIC-style CSR transition matrix, on the quantizer tokens (fixed length 3).
    pub fn static_trie(keys: &[u64], sample: &[u64], m: u16) -> Row {
        let codes = |k: u64| -> Vec<u32> {
            let t = [
                (k >> 48) as u32,
                (k >> 32) as u32 & 0xffff,
                (k >> 16) as u32 & 0xffff,
            ];
            vec![t[0], t[1] - m as u32, t[2] - 2 * m as u32]
        };
        let mut constraints: Vec<Vec<u32>> = keys.iter().map(|&k| codes(k)).collect();
        constraints.dedup();
        let n = constraints.len();
        let t0 = Instant::now();
        let index = build_static_index(&constraints, m as u32, 3, 2);
        let build_seconds = t0.elapsed().as_secs_f64();
        drop(constraints);
        let sparse = &index.sparse;
        let bytes = sparse.row_pointers.len() * 4
            + sparse.data.len() * 8
            + index.dense.bits.len() * 8
            + index.dense.states.len() * 4;
        let mut steps = 0usize;
        let t1 = Instant::now();
        for &k in sample {
            let mut node = 0u32;
            for t in codes(k) {
                black_box(sparse.children(node).len());
                match sparse.next_node(node, t) {
                    Some(next) => node = next,
                    None => break,
                }
                steps += 1;
            }
        }
        let ns_per_step = t1.elapsed().as_nanos() as f64 / steps.max(1) as f64;
        let walks: Vec<Vec<u32>> = sample.iter().map(|&k| codes(k)).collect();
        let ns_per_lockstep = best_of(|| {
            lockstep(
                &walks,
                0u32,
                |n| sparse.children(n).len(),
                |n, t| sparse.next_node(n, t),
            )
        })
        .unwrap_or(f64::NAN);
        let t2 = Instant::now();
        for &k in sample {
            let c = codes(k);
            let node = sparse
                .next_node(0, c[0])
                .and_then(|n| sparse.next_node(n, c[1]));
            black_box(node.map(|n| sparse.children(n).len()));
        }
        let ns_per_next_tokens = t2.elapsed().as_nanos() as f64 / sample.len() as f64;
        Row {
            name: "constraint-decoding-trie 0.1 (fixed)".into(),
            sids: n,
            build_seconds,
            file_seconds: None,
            bytes: bytes as f64,
            open_ms: None,
            ns_per_step: Some(ns_per_step),
            ns_per_lockstep: Some(ns_per_lockstep),
            ns_per_next_tokens,
            breakdown: String::new(),
        }
    }
}
