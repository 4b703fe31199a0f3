//! `sidx bench index-scale`: an index of up to a billion synthetic SIDs
//! (3 × 4096 + disambiguation, [`LongTail`]) built with bounded memory —
//! sorted runs of packed keys spilled to disk, merged into the streaming
//! builder ([`sidx::index::build_sorted`]) — then opened and queried; prints
//! wall time per phase, peak RSS, bytes per SID, open+verify time and
//! lookup times.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::fixtures::{CHUNK, LongTail, key_tokens};
use super::index::{Lookups, bench_update, measure_lookups, update_deletes};
use sidx::index::{IndexStore, Manifest, build_sorted};
use sidx::progress::Progress;
use sidx::sid::{CollisionMode, Layout};

#[derive(Args)]
pub struct ScaleBench {
    /// SIDs (items) to build, at most 2^32.
    #[arg(long, default_value_t = 1_000_000_000)]
    sids: u64,
    /// Codebook size of each of the 3 layers.
    #[arg(long, default_value_t = 4096)]
    codebook_size: u16,
    /// K of the variable-length variant (drop layer 2 behind the top K codes; 0: fixed length).
    #[arg(long, default_value_t = 400)]
    top_k: usize,
    /// Items per sorted run held in memory (16 bytes each).
    #[arg(long, default_value_t = 128 << 20)]
    run_items: usize,
    /// Random SIDs walked / prefixes queried per measurement.
    #[arg(long, default_value_t = 200_000)]
    samples: usize,
    /// Where the runs and the index are written (default: a temporary directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep the built index (in WORKDIR/index).
    #[arg(long)]
    keep: bool,
    /// Then time a catalog update (10 000 upserts and deletes streamed into
    /// a new version) and check that the kept items' SIDs did not move.
    #[arg(long)]
    update: bool,
}

/// Bytes of a spilled record: the packed key and the item number.
const RECORD: usize = 12;

pub fn run(b: &ScaleBench, progress: &Progress) -> Result<()> {
    if b.sids > 1 << 32 {
        bail!("--sids {}: items are numbered in 32 bits", b.sids);
    }
    let work = b.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sidx-bench-scale-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let tail = LongTail::new(b.codebook_size, (b.top_k > 0).then_some(b.top_k), 7);

    let t0 = Instant::now();
    let runs = spill_runs(b, &tail, &work, progress)?;
    let sort_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let store = IndexStore::new(&work.join("index")).with_format_version(2);
    let layout = Layout::new(vec![u32::from(b.codebook_size); 3])?;
    let mut template = Manifest::new(&layout, CollisionMode::Disambiguate);
    template.source = format!("synthetic index-scale, {} SIDs", b.sids);
    template.format_version = 2;
    let every = (b.sids / b.samples.max(1) as u64).max(1);
    let mut sample = Vec::with_capacity(b.samples);
    progress.note(&format!("merging {} runs into the builder", runs.len()));
    let summary = build_sorted(&store, template, |builder| {
        let mut tokens = Vec::with_capacity(4);
        let mut id = String::new();
        let mut pushed = 0u64;
        merge_disambiguated(&runs, &tail, |key, item| {
            key_tokens(key, &mut tokens);
            id.clear();
            std::fmt::Write::write_fmt(&mut id, format_args!("{item}")).expect("to a String");
            if pushed.is_multiple_of(every) && sample.len() < b.samples {
                sample.push(key);
            }
            pushed += 1;
            builder.push(&tokens, &id)
        })
    })?;
    let build_s = t1.elapsed().as_secs_f64();
    for r in &runs {
        let _ = std::fs::remove_file(r);
    }
    let rss_build = peak_rss_gib();

    let t2 = Instant::now();
    let index = store.open_current()?;
    let open_ms = t2.elapsed().as_secs_f64() * 1e3;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    sample.shuffle(&mut rng);
    let Lookups {
        ns_per_step,
        ns_per_lockstep,
        ns_per_next_tokens,
    } = measure_lookups(&index, &sample)?;
    let heap = index.heap_bytes() as f64 / summary.sids as f64;
    drop(index);
    let rss_all = peak_rss_gib();

    println!(
        "| {:>13} | {:>5} | {:>6} | {:>7} | {:>7} | {:>13} | {:>9} | {:>11} | {:>8} | {:>7} | {:>8} | {:>11} |",
        "SIDs",
        "runs",
        "sort s",
        "build s",
        "total s",
        "peak RSS GiB",
        "bytes/SID",
        "heap B/SID",
        "open ms",
        "ns/step",
        "batched",
        "next_tokens"
    );
    println!("|{}|", ["---"; 12].join("|"));
    println!(
        "| {:>13} | {:>5} | {:>6.1} | {:>7.1} | {:>7.1} | {:>6.1} / {:>4.1} | {:>9.2} | {:>11.2} | {:>8.0} | {:>7.1} | {:>8.1} | {:>11.1} |",
        summary.sids,
        runs.len(),
        sort_s,
        build_s,
        sort_s + build_s,
        rss_build,
        rss_all,
        summary.bytes as f64 / summary.sids as f64,
        heap,
        open_ms,
        ns_per_step,
        ns_per_lockstep,
        ns_per_next_tokens,
    );
    println!(
        "peak RSS: {rss_build:.1} GiB through the build, {rss_all:.1} GiB with the index opened and queried; \
         {} items, {} nodes, {} bytes",
        summary.items, summary.nodes, summary.bytes
    );
    if b.update {
        timed_update(&store, b)?;
    }
    if !b.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// Items whose SIDs [`timed_update`] compares before and after.
const STABLE_PROBES: usize = 1000;

/// Applies [`bench_update`] to the built version, prints its time and peak
/// RSS, and fails unless every probed item it kept has the SID it had.
fn timed_update(store: &IndexStore, b: &ScaleBench) -> Result<()> {
    let n = b.sids as usize;
    let deleted: std::collections::HashSet<usize> = update_deletes(n).collect();
    let probes: Vec<String> = (0..STABLE_PROBES)
        .map(|j| j * n / STABLE_PROBES + 1)
        .filter(|i| *i < n && !deleted.contains(i))
        .map(|i| i.to_string())
        .collect();
    let sids_of =
        |index: &sidx::index::Index| -> Vec<_> { probes.iter().map(|id| index.sid(id)).collect() };
    let before = sids_of(&store.open_current()?);
    let seconds = bench_update(store, n, b.codebook_size, "")?;
    let after = store.open_current()?;
    let moved = before
        .iter()
        .zip(sids_of(&after))
        .filter(|(a, b)| a.is_none() || *a != b)
        .count();
    let (items, kept) = (after.item_count(), probes.len() - moved);
    println!(
        "update: {} upserts and {} deletes streamed into a new version of {items} items in \
         {seconds:.1} s (peak RSS {:.1} GiB); {kept}/{} kept items' SIDs unchanged",
        super::index::UPDATE_ITEMS,
        deleted.len(),
        peak_rss_gib(),
        probes.len(),
    );
    if moved > 0 {
        bail!("the update moved {moved} kept items' SIDs");
    }
    Ok(())
}

fn peak_rss_gib() -> f64 {
    super::util::proc_status_kib("self", "VmHWM").unwrap_or(f64::NAN) / (1024.0 * 1024.0)
}

/// Draws the SIDs run by run (`run_items` at a time, in parallel), sorts each
/// run by (key, item) and writes it to `work`; returns the run files.
fn spill_runs(
    b: &ScaleBench,
    tail: &LongTail,
    work: &Path,
    progress: &Progress,
) -> Result<Vec<PathBuf>> {
    let run_items = b.run_items.max(CHUNK) / CHUNK * CHUNK;
    let n = b.sids as usize;
    let mut runs = Vec::new();
    let mut records: Vec<u128> = Vec::with_capacity(run_items.min(n));
    let mut bytes = Vec::new();
    for start in (0..n).step_by(run_items) {
        let rows = run_items.min(n - start);
        progress.note(&format!(
            "run {}: drawing and sorting {rows} SIDs",
            runs.len()
        ));
        records.clear();
        records.par_extend(
            (start / CHUNK..(start + rows).div_ceil(CHUNK))
                .into_par_iter()
                .flat_map_iter(|chunk| {
                    let first = chunk * CHUNK;
                    let keys = tail.chunk(chunk, CHUNK.min(n - first));
                    keys.into_iter()
                        .enumerate()
                        .map(move |(j, k)| u128::from(k) << 32 | (first + j) as u128)
                }),
        );
        records.par_sort_unstable();
        let path = work.join(format!("run-{}.bin", runs.len()));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = BufWriter::with_capacity(8 << 20, file);
        for chunk in records.chunks(1 << 16) {
            bytes.clear();
            for &r in chunk {
                bytes.extend_from_slice(&((r >> 32) as u64).to_le_bytes());
                bytes.extend_from_slice(&(r as u32).to_le_bytes());
            }
            w.write_all(&bytes)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        runs.push(path);
    }
    Ok(runs)
}

/// Reads one run's records in order.
struct RunReader {
    r: BufReader<File>,
    path: PathBuf,
}

impl RunReader {
    fn next(&mut self) -> Result<Option<(u64, u32)>> {
        let mut rec = [0u8; RECORD];
        match self.r.read_exact(&mut rec) {
            Ok(()) => Ok(Some((
                u64::from_le_bytes(rec[..8].try_into().expect("8 bytes")),
                u32::from_le_bytes(rec[8..].try_into().expect("4 bytes")),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }
}

/// Merges the runs in (key, item) order and hands each item its SID key:
/// items sharing a key get a disambiguation code each, in item order —
/// `key + [code]` still sorts before the next key, so the output stays sorted.
fn merge_disambiguated(
    runs: &[PathBuf],
    tail: &LongTail,
    mut push: impl FnMut(u64, u32) -> Result<(), sidx::index::IndexError>,
) -> Result<(), sidx::index::IndexError> {
    let io = |e: anyhow::Error| sidx::index::IndexError::Internal(format!("{e:#}"));
    let mut readers = runs
        .iter()
        .map(|p| {
            let file = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            Ok(RunReader {
                r: BufReader::with_capacity(4 << 20, file),
                path: p.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()
        .map_err(io)?;
    let mut heap = BinaryHeap::new();
    for (k, r) in readers.iter_mut().enumerate() {
        if let Some((key, item)) = r.next().map_err(io)? {
            heap.push(Reverse((key, item, k)));
        }
    }
    let mut group: Vec<u32> = Vec::new();
    let mut group_key = 0u64;
    let mut flush = |key: u64, group: &mut Vec<u32>| -> Result<(), sidx::index::IndexError> {
        match group.as_slice() {
            [] => {}
            [item] => push(key, *item)?,
            items => {
                for (code, &item) in items.iter().enumerate() {
                    push(tail.disambiguated(key, code), item)?;
                }
            }
        }
        group.clear();
        Ok(())
    };
    while let Some(Reverse((key, item, k))) = heap.pop() {
        if key != group_key {
            flush(group_key, &mut group)?;
            group_key = key;
        }
        group.push(item);
        if let Some((key, item)) = readers[k].next().map_err(io)? {
            heap.push(Reverse((key, item, k)));
        }
    }
    flush(group_key, &mut group)
}
