//! End-to-end jobs behind the CLI: embeddings → SIDs (+ codebooks and the
//! hourglass report), and SIDs → mitigated SIDs. Inputs are checked first;
//! outputs are staged and published together, or not at all.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::fsx::{FsError, Staging};
use crate::hourglass::{self, HourglassReport, MitigateError, Strategy};
use crate::npy::{self, NpyError};
use crate::progress::Progress;
use crate::quantize::{self, QuantizeError, QuantizerMeta, ResidualQuantizer, TrainConfig};
use crate::shards::{self, EmbeddingColumns, ShardError};
use crate::sid::{CollisionMode, Layout, SidError, SidHeader, SidTable, resolve_collisions};

/// Files a quantize run writes into its output directory.
pub const SIDS_FILE: &str = "sids.tsv";
pub const REPORT_FILE: &str = "hourglass.json";
pub const SVG_FILE: &str = "hourglass.svg";
/// The quantizer's codes `[N, L]` (uint32, before collisions are resolved)
/// and their item ids, one per line: `sidx index build --sids DIR` reads
/// these instead of parsing `sids.tsv`.
pub const CODES_FILE: &str = "codes.npy";
pub const IDS_FILE: &str = "ids.txt";

/// Errors of the end-to-end jobs.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
    #[error(transparent)]
    Sid(#[from] SidError),
    #[error(transparent)]
    Mitigate(#[from] MitigateError),
    #[error(transparent)]
    Shards(#[from] ShardError),
    #[error(transparent)]
    Io(#[from] FsError),
}

/// A quantize run: embeddings (+ optional ids) in, a SID directory out.
#[derive(Clone, Debug)]
pub struct QuantizeJob {
    /// A `.npy` float32 `[N, D]` array, or Parquet shards.
    pub embeddings: PathBuf,
    /// Item ids of `.npy` rows, one per line (Parquet: `columns.id`).
    pub ids: Option<PathBuf>,
    pub columns: EmbeddingColumns,
    pub train: TrainConfig,
    /// Beam width for encoding the items (1 = greedy).
    pub beam: usize,
    pub collisions: CollisionMode,
    pub head_share: f64,
    pub out: PathBuf,
}

/// What a quantize run produced.
pub struct QuantizeOutcome {
    pub table: SidTable,
    pub report: HourglassReport,
    pub meta: QuantizerMeta,
    pub train_seconds: f64,
    pub encode_seconds: f64,
}

impl QuantizeJob {
    pub fn run(&self, progress: &Progress) -> Result<QuantizeOutcome, PipelineError> {
        let (x, dim, ids) = read_catalog(&self.embeddings, self.ids.as_deref(), &self.columns)?;
        let n = ids.len();
        let trained_on = self.train.train_sample.map_or(n, |s| s.min(n));
        if self.train.codebook_size > trained_on {
            return Err(PipelineError::Input {
                path: self.embeddings.clone(),
                msg: format!(
                    "--codebook-size {} is larger than the {trained_on} vectors trained on (M > N)",
                    self.train.codebook_size
                ),
            });
        }
        let t0 = Instant::now();
        let rq = ResidualQuantizer::train(&x, dim, &self.train, progress)?;
        let train_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let encoded = rq.encode_catalog(self.train.method, &x, self.beam, progress);
        let encode_seconds = t1.elapsed().as_secs_f64();
        let meta = QuantizerMeta {
            seed: self.train.seed,
            trained_on,
            kmeans_iters: self.train.kmeans_iters,
            kmeans_tol: self.train.kmeans_tol,
            kmeans_init: self.train.kmeans_init.name().into(),
            beam: self.beam,
            items: n,
            mse: encoded.mse(),
            method: self.train.method,
            collisions: Some(self.collisions),
            ..QuantizerMeta::new(&rq)
        };
        let layout = Layout::new(vec![self.train.codebook_size as u32; self.train.layers])?;
        let header = SidHeader {
            method: Some(self.train.method.name().to_string()),
            ..SidHeader::new(&layout, self.collisions)
        };
        let table = resolve_collisions(
            &SidTable::from_codes(header, ids, &encoded.codes),
            self.collisions,
        );
        let report = HourglassReport::measure(&table, self.head_share);

        let mut staging = Staging::new();
        staging.create_dir(&self.out)?;
        stage_sids(&mut staging, &self.out.join(SIDS_FILE), &table)?;
        stage_codes(&mut staging, &self.out, &table, &encoded.codes)?;
        rq.stage(&mut staging, &self.out, &meta)?;
        stage_report(&mut staging, &self.out, &table, &report)?;
        staging.commit()?;
        Ok(QuantizeOutcome {
            table,
            report,
            meta,
            train_seconds,
            encode_seconds,
        })
    }
}

/// Encodes items with stored codebooks (`codebooks.npy`) into a SID file
/// (TSV, or Parquet when `out` ends in `.parquet`). Parquet embeddings are
/// encoded batch by batch as they stream in.
#[derive(Clone, Debug)]
pub struct EncodeJob {
    pub codebooks: PathBuf,
    pub embeddings: PathBuf,
    pub ids: Option<PathBuf>,
    pub columns: EmbeddingColumns,
    pub beam: usize,
    pub collisions: CollisionMode,
    pub out: PathBuf,
}

impl EncodeJob {
    pub fn run(&self, progress: &Progress) -> Result<SidTable, PipelineError> {
        let rq = ResidualQuantizer::load(&self.codebooks)?;
        let wrong_dim = |dim: usize| PipelineError::Input {
            path: self.embeddings.clone(),
            msg: format!(
                "embeddings have dimension {dim}, the codebooks in {} have {}",
                self.codebooks.display(),
                rq.dim()
            ),
        };
        let (ids, codes) = if shards::is_parquet(&self.embeddings) {
            no_id_file(&self.embeddings, self.ids.as_deref())?;
            let (mut ids, mut codes) = (Vec::new(), Vec::new());
            shards::read_embeddings(&self.embeddings, &self.columns, |b| {
                if b.dim != rq.dim() {
                    return Err(wrong_dim(b.dim));
                }
                codes.extend(rq.encode(b.x, self.beam, &Progress::hidden()).codes);
                ids.extend(b.ids);
                Ok::<_, PipelineError>(())
            })?;
            (ids, codes)
        } else {
            let (x, dim, ids) = read_catalog(&self.embeddings, self.ids.as_deref(), &self.columns)?;
            if dim != rq.dim() {
                return Err(wrong_dim(dim));
            }
            (ids, rq.encode(&x, self.beam, progress).codes)
        };
        let sizes = rq.codebook_sizes();
        // The codebooks' method (each item takes its nearest code: an
        // rq-balanced catalog's balance does not extend to items added later).
        let header = SidHeader {
            method: QuantizerMeta::beside(&self.codebooks).map(|m| m.method.name().to_string()),
            ..SidHeader::new(&Layout::new(sizes)?, self.collisions)
        };
        let table = resolve_collisions(&SidTable::from_codes(header, ids, &codes), self.collisions);
        let mut staging = Staging::new();
        stage_sids(&mut staging, &self.out, &table)?;
        staging.commit()?;
        Ok(table)
    }
}

/// Mitigates a SID file; returns the reports before and after.
pub fn mitigate_file(
    input: &Path,
    out: &Path,
    strategy: Strategy,
    collisions: Option<CollisionMode>,
    head_share: f64,
) -> Result<(HourglassReport, HourglassReport), PipelineError> {
    let table = SidTable::read(input)?;
    let before = HourglassReport::measure(&table, head_share);
    let mode = collisions.unwrap_or(table.header().collisions);
    let mitigated = hourglass::mitigate(&table, strategy, mode)?;
    let after = HourglassReport::measure(&mitigated, head_share);
    let mut staging = Staging::new();
    stage_sids(&mut staging, out, &mitigated)?;
    staging.commit()?;
    Ok((before, after))
}

/// Stages `hourglass.json` and `hourglass.svg` in `dir`.
pub fn stage_report(
    staging: &mut Staging,
    dir: &Path,
    table: &SidTable,
    report: &HourglassReport,
) -> Result<(), FsError> {
    let json = serde_json::to_vec_pretty(report).expect("report serializes");
    staging.write(&dir.join(REPORT_FILE), |w| w.write_all(&json))?;
    let svg = hourglass::render_svg(table, report);
    staging.write(&dir.join(SVG_FILE), |w| w.write_all(svg.as_bytes()))
}

/// Stages a SID file: Parquet when `path` ends in `.parquet`, else TSV.
fn stage_sids(staging: &mut Staging, path: &Path, table: &SidTable) -> Result<(), FsError> {
    if path.extension().is_some_and(|e| e == "parquet") {
        staging.write(path, |w| shards::write_sids(table, w))
    } else {
        staging.write(path, |w| table.write_to(w))
    }
}

/// Stages the quantizer's raw codes ([`CODES_FILE`]) and the item ids of
/// `table` — built from them, rows in the same order — ([`IDS_FILE`]) under `dir`.
fn stage_codes(
    staging: &mut Staging,
    dir: &Path,
    table: &SidTable,
    codes: &[u32],
) -> Result<(), FsError> {
    let items = table.len();
    staging.write(&dir.join(CODES_FILE), |w| {
        npy::write_codes_to(w, &[items, codes.len() / items.max(1)], codes)
    })?;
    staging.write(&dir.join(IDS_FILE), |w| {
        (0..items).try_for_each(|i| writeln!(w, "{}", table.id(i)))
    })
}

/// Embeddings `[N, D]` and their N item ids: a `.npy` array with an id
/// file (or row numbers), or Parquet shards with their id column.
pub fn read_catalog(
    path: &Path,
    ids: Option<&Path>,
    columns: &EmbeddingColumns,
) -> Result<(Vec<f32>, usize, Vec<String>), PipelineError> {
    if shards::is_parquet(path) {
        no_id_file(path, ids)?;
        let (mut x, mut all_ids) = (Vec::new(), Vec::new());
        let read = shards::read_embeddings(path, columns, |b| {
            x.extend_from_slice(b.x);
            all_ids.extend(b.ids);
            Ok::<_, PipelineError>(())
        })?;
        return Ok((x, read.dim, all_ids));
    }
    let (x, n, dim) = read_embeddings(path)?;
    let ids = match ids {
        Some(p) => read_ids(p, n)?,
        None => (0..n).map(|i| i.to_string()).collect(),
    };
    Ok((x, dim, ids))
}

fn no_id_file(path: &Path, ids: Option<&Path>) -> Result<(), PipelineError> {
    match ids {
        Some(f) => Err(PipelineError::Input {
            path: f.to_owned(),
            msg: format!(
                "an id file does not apply to Parquet embeddings ({}): their ids come \
                 from the id column (--id-column)",
                path.display()
            ),
        }),
        None => Ok(()),
    }
}

/// Reads float32 `[N, D]` embeddings and refuses empty or non-finite data.
pub fn read_embeddings(path: &Path) -> Result<(Vec<f32>, usize, usize), PipelineError> {
    let (x, n, d) = npy::read_matrix(path)?;
    let bad = |msg: String| PipelineError::Input {
        path: path.to_owned(),
        msg,
    };
    if n == 0 || d == 0 {
        return Err(bad(format!("empty embeddings, shape [{n}, {d}]")));
    }
    quantize::check_finite(&x, d).map_err(bad)?;
    Ok((x, n, d))
}

/// Reads one item id per line; there must be exactly `n`, non-empty, unique, tab-free.
pub fn read_ids(path: &Path, n: usize) -> Result<Vec<String>, PipelineError> {
    let bad = |msg: String| PipelineError::Input {
        path: path.to_owned(),
        msg,
    };
    let text = fs::read_to_string(path).map_err(|e| FsError::new(path, "read", e))?;
    let ids: Vec<String> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect();
    if ids.len() != n {
        return Err(bad(format!(
            "{} ids for {n} embedding rows (one id per line expected)",
            ids.len()
        )));
    }
    let mut seen = std::collections::HashMap::with_capacity(n);
    for (i, id) in ids.iter().enumerate() {
        if id.is_empty() || id.contains('\t') || id.trim() != id {
            return Err(bad(format!(
                "line {}: item id {id:?} is empty or has tabs/surrounding spaces",
                i + 1
            )));
        }
        if let Some(first) = seen.insert(id.as_str(), i + 1) {
            return Err(bad(format!(
                "line {}: duplicate item id {id:?} (first on line {first})",
                i + 1
            )));
        }
    }
    Ok(ids)
}
