//! The catalog above the index: what a version's SIDs mean. Embeddings
//! become SIDs here, with the codebooks and mitigation rule the current
//! version stores, and the index ([`crate::index::SidUpdate`]) takes SIDs
//! only; the hourglass statistics of a served version are read here too.

use crate::hourglass::LayerStats;
use crate::index::{Index, IndexError, IndexStore, SidUpdate, UpdateSummary};
use crate::progress::Progress;
use crate::quantize::{CODEBOOKS_FILE, Method, ResidualQuantizer};
use crate::sid::{SidHeader, SidTable, Token};

/// Item embeddings, row-major `ids.len() × dim`.
#[derive(Clone, Debug, Default)]
pub struct Embeddings {
    pub values: Vec<f32>,
    pub dim: usize,
    pub ids: Vec<String>,
}

/// What to change in the catalog.
#[derive(Default)]
pub struct CatalogUpdate {
    /// Items with explicit SIDs: new ones are added, existing ones re-pointed.
    pub upsert_sids: Option<SidTable>,
    /// Items with embeddings: new ones are encoded; existing ones keep their SID.
    pub upsert_embeddings: Option<Embeddings>,
    /// Items to remove; every one must exist.
    pub deletes: Vec<String>,
}

impl CatalogUpdate {
    /// Encodes the new items' embeddings against the current version and
    /// applies the resulting SIDs ([`SidUpdate::apply`]) — all of it or, on
    /// any error, nothing. The writer lock is held from reading the base
    /// version to publishing, so the codebooks used are the base's.
    pub fn apply(self, store: &IndexStore) -> Result<UpdateSummary, IndexError> {
        let lock = store.lock()?;
        let base = store.open_current_locked(&lock)?;
        let mut upsert_sids = self.upsert_sids;
        let mut kept = 0;
        if let Some(e) = &self.upsert_embeddings {
            if e.values.len() != e.ids.len() * e.dim {
                return Err(IndexError::Input(format!(
                    "upsert embeddings: {} values for {} ids of dimension {}",
                    e.values.len(),
                    e.ids.len(),
                    e.dim
                )));
            }
            // Existing items keep their SIDs; only new ones are encoded.
            let fresh: Vec<usize> = (0..e.ids.len())
                .filter(|&i| base.sid(&e.ids[i]).is_none())
                .collect();
            kept = e.ids.len() - fresh.len();
            let sids = encode(&base, &e.values, e.dim, &fresh)?;
            if !sids.is_empty() {
                let table = upsert_sids.get_or_insert_with(|| {
                    let m = base.manifest();
                    SidTable::new(SidHeader::new(base.layout(), m.collisions))
                });
                for (&i, sid) in fresh.iter().zip(&sids) {
                    table.push(e.ids[i].clone(), sid);
                }
            }
        }
        let update = SidUpdate {
            upsert_sids,
            deletes: self.deletes,
        };
        let mut summary = update.apply_locked(store, &lock, &base)?;
        summary.kept = kept;
        Ok(summary)
    }
}

/// Quantizer tokens (mitigation applied) of the rows `rows` of `x`, with
/// the codebooks and rule `index` stores.
fn encode(
    index: &Index,
    x: &[f32],
    dim: usize,
    rows: &[usize],
) -> Result<Vec<Vec<Token>>, IndexError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let m = index.manifest();
    if !m.has_codebooks {
        return Err(IndexError::Input(
            "this index stores no codebooks (build it with --codebooks) so it cannot encode embeddings; send --upsert-sids instead".into(),
        ));
    }
    let rq = ResidualQuantizer::load(&index.dir().join(CODEBOOKS_FILE))?;
    if rq.dim() != dim {
        return Err(IndexError::Input(format!(
            "upsert embeddings have dimension {dim}, the stored codebooks {}",
            rq.dim()
        )));
    }
    let sub: Vec<f32> = rows
        .iter()
        .flat_map(|&r| &x[r * dim..(r + 1) * dim])
        .copied()
        .collect();
    // Items added later are encoded with the catalog's beam (recorded at
    // build), else the method's; an rq-balanced catalog's balance is
    // catalog-wide, so its new items take nearest codes.
    let beam = m.encode_beam.unwrap_or_else(|| {
        m.method
            .as_deref()
            .and_then(Method::from_name)
            .map_or(1, Method::default_beam)
    });
    let codes = rq.encode(&sub, beam, &Progress::hidden()).codes;
    let mut buf = Vec::new();
    Ok(codes
        .chunks_exact(rq.layers())
        .map(|c| {
            let sid: Vec<Token> = c
                .iter()
                .enumerate()
                .map(|(l, &code)| Token::new(l as u8 + 1, code))
                .collect();
            match &m.mitigation {
                Some(rule) => {
                    rule.apply(&sid, &mut buf);
                    buf.clone()
                }
                None => sid,
            }
        })
        .collect())
}

/// Concentration statistics of each quantizer layer of a version's SIDs
/// (from the per-code counts its manifest keeps).
pub fn layer_stats(index: &Index) -> Vec<LayerStats> {
    index
        .manifest()
        .layer_counts
        .iter()
        .zip(index.layout().codebook_sizes())
        .enumerate()
        .map(|(l, (c, &m))| LayerStats::from_counts(l as u8 + 1, m, c))
        .collect()
}
