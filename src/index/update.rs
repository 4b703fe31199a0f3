//! Catalog updates: new items get SIDs from the stored codebooks and the
//! stored mitigation rule (existing items keep theirs, so a trained generator
//! stays valid), removed items disappear, and the new version is written by
//! merging the old version's sorted stream with the sorted delta.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;

use super::reader::Index;
use super::store::{BuildSummary, IndexStore, table_entries, write_version_files};
use super::{IndexError, TokenId};
use crate::hourglass::apply_rule;
use crate::progress::Progress;
use crate::quantize::{CODEBOOKS_FILE, ResidualQuantizer};
use crate::sid::{CollisionMode, SidTable, Token};

/// What to change in the catalog.
#[derive(Default)]
pub struct CatalogUpdate {
    /// Items with explicit SIDs: new ones are added, existing ones re-pointed.
    pub upsert_sids: Option<SidTable>,
    /// Items with embeddings (`ids.len() × dim`): new ones are encoded; existing ones keep their SID.
    pub upsert_embeddings: Option<(Vec<f32>, usize, Vec<String>)>,
    /// Items to remove; every one must exist.
    pub deletes: Vec<String>,
}

/// What an update changed.
#[derive(Clone, Debug, Serialize)]
pub struct UpdateSummary {
    pub previous_version: u64,
    #[serde(flatten)]
    pub build: BuildSummary,
    pub added: usize,
    pub replaced: usize,
    /// Existing items sent as embeddings: their SID is kept.
    pub kept: usize,
    pub deleted: usize,
    pub disambiguated: usize,
}

impl CatalogUpdate {
    /// Applies the update to the current version of `store` and publishes the result.
    pub fn apply(self, store: &IndexStore) -> Result<UpdateSummary, IndexError> {
        let t0 = Instant::now();
        let old = store.open_current()?;
        let deletes: HashSet<&str> = self.deletes.iter().map(String::as_str).collect();
        for (i, id) in self.deletes.iter().enumerate() {
            if old.sid(id).is_none() {
                return Err(IndexError::Input(format!(
                    "deletes, entry {}: unknown item id {id:?}",
                    i + 1
                )));
            }
        }
        let mut delta: Vec<(Vec<TokenId>, String)> = Vec::new();
        let mut removed: HashSet<String> = deletes.iter().map(|s| s.to_string()).collect();
        let (mut added, mut replaced, mut kept, mut disambiguated) = (0, 0, 0, 0);

        if let Some(table) = &self.upsert_sids {
            check_layout(&old, table)?;
            for (sid, id) in table_entries(table)? {
                if deletes.contains(id.as_str()) {
                    return Err(IndexError::Input(format!(
                        "item {id:?} is both upserted and deleted"
                    )));
                }
                if old.sid(&id).is_some() {
                    replaced += 1;
                    removed.insert(id.clone());
                } else {
                    added += 1;
                }
                delta.push((sid, id));
            }
        }
        if let Some((x, dim, ids)) = &self.upsert_embeddings {
            let mut assigner = Disambiguator::new(&old, &delta);
            let fresh: Vec<usize> = (0..ids.len())
                .filter(|&i| old.sid(&ids[i]).is_none() || removed.contains(&ids[i]))
                .collect();
            kept += ids.len() - fresh.len();
            let sids = encode_new(&old, x, *dim, &fresh)?;
            for (&i, sid) in fresh.iter().zip(sids) {
                let id = &ids[i];
                if deletes.contains(id.as_str()) {
                    return Err(IndexError::Input(format!(
                        "item {id:?} is both upserted and deleted"
                    )));
                }
                let sid = assigner.assign(sid, &mut disambiguated);
                added += 1;
                delta.push((sid, id.clone()));
            }
        }
        delta.sort_unstable();
        if let Some(w) = delta.windows(2).find(|w| w[0].1 == w[1].1) {
            return Err(IndexError::Input(format!(
                "item {:?} is upserted twice",
                w[0].1
            )));
        }
        let mut ids_seen = HashSet::with_capacity(delta.len());
        for (_, id) in &delta {
            if !ids_seen.insert(id.as_str()) {
                return Err(IndexError::Input(format!("item {id:?} is upserted twice")));
            }
        }

        let mut layer_counts = old.manifest().layer_counts.clone();
        let old_entries = old
            .entries()
            .filter(|(_, id)| !removed.contains(*id))
            .map(|(s, id)| (s, id.to_owned()));
        let mut sid = Vec::new();
        for id in &removed {
            if old.sid_into(id, &mut sid) {
                count(&old, &mut layer_counts, &sid, -1);
            }
        }
        for (sid, _) in &delta {
            count(&old, &mut layer_counts, sid, 1);
        }
        let merged = MergeSorted::new(old_entries, delta.into_iter());
        let previous_version = old.version();
        let old_dir = old.dir().to_owned();
        let old_manifest = old.manifest().clone();
        let manifest = store.publish(|dir| {
            let counts = write_version_files(dir, merged)?;
            if old_manifest.has_codebooks {
                let (src, dst) = (old_dir.join(CODEBOOKS_FILE), dir.join(CODEBOOKS_FILE));
                std::fs::copy(&src, &dst).map_err(|e| IndexError::io(&dst, e))?;
            }
            let mut m = old_manifest.clone().with_counts(counts);
            m.source = format!("update of v{previous_version:08}");
            m.layer_counts = layer_counts;
            Ok(m)
        })?;
        Ok(UpdateSummary {
            previous_version,
            build: BuildSummary::of(&manifest, t0),
            added,
            replaced,
            kept,
            deleted: deletes.len(),
            disambiguated,
        })
    }
}

/// Adjusts per-layer code counts by one SID's quantizer tokens.
fn count(index: &Index, counts: &mut [Vec<u64>], sid: &[TokenId], delta: i64) {
    for &t in sid {
        let tok = index.token(t);
        if let Some(c) = counts
            .get_mut(tok.layer as usize - 1)
            .and_then(|l| l.get_mut(tok.code as usize))
        {
            *c = c.saturating_add_signed(delta);
        }
    }
}

fn check_layout(index: &Index, table: &SidTable) -> Result<(), IndexError> {
    let (ours, theirs) = (index.layout(), table.layout());
    let tokens_fit = table
        .iter()
        .all(|(_, s)| s.iter().all(|&t| ours.check(t).is_ok()));
    if ours.codebook_sizes() != theirs.codebook_sizes() && !tokens_fit {
        return Err(IndexError::Input(format!(
            "upsert SIDs have layout {:?}, the index {:?}",
            theirs.codebook_sizes(),
            ours.codebook_sizes()
        )));
    }
    Ok(())
}

/// Quantizer tokens (mitigation applied) of the rows `rows` of `x`.
fn encode_new(
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
    let codes = rq.encode(&sub, 1, &Progress::hidden()).codes;
    let layers = rq.layers();
    let mut buf = Vec::new();
    Ok(codes
        .chunks_exact(layers)
        .map(|c| {
            let sid: Vec<Token> = c
                .iter()
                .enumerate()
                .map(|(l, &code)| Token::new(l as u8 + 1, code))
                .collect();
            match &m.mitigation {
                Some(rule) => {
                    apply_rule(rule, &sid, &mut buf);
                    buf.clone()
                }
                None => sid,
            }
        })
        .collect())
}

/// Hands out the next free disambiguation token under a SID already taken.
struct Disambiguator<'a> {
    index: &'a Index,
    mode: CollisionMode,
    taken: HashMap<Vec<TokenId>, u32>,
}

impl<'a> Disambiguator<'a> {
    fn new(index: &'a Index, delta: &[(Vec<TokenId>, String)]) -> Self {
        let mut d = Self {
            index,
            mode: index.manifest().collisions,
            taken: HashMap::new(),
        };
        for (sid, _) in delta {
            d.note(sid);
        }
        d
    }

    /// Records an explicit SID so later assignments avoid it.
    fn note(&mut self, sid: &[TokenId]) {
        let dis = self.index.layout().disambiguation_layer();
        if let Some((&last, base)) = sid.split_last() {
            let t = self.index.token(last);
            let (base, next) = if t.layer == dis {
                (base.to_vec(), t.code + 1)
            } else {
                (sid.to_vec(), 0)
            };
            let e = self.taken.entry(base).or_insert(0);
            *e = (*e).max(next);
        }
    }

    fn assign(&mut self, sid: Vec<Token>, disambiguated: &mut usize) -> Vec<TokenId> {
        let ids: Vec<TokenId> = sid
            .iter()
            .map(|&t| {
                self.index
                    .token_id(t)
                    .expect("encoded tokens fit the layout")
            })
            .collect();
        if self.mode == CollisionMode::Share {
            return ids;
        }
        let dis_layer = self.index.layout().disambiguation_layer();
        let node = self.index.walk(&ids);
        let in_index =
            node.is_some_and(|n| self.index.is_terminal(n) || !self.index.children(n).is_empty());
        let from_index = node.map_or(0, |n| {
            self.index
                .children(n)
                .iter()
                .map(|&t| self.index.token(t))
                .filter(|t| t.layer == dis_layer)
                .map(|t| t.code + 1)
                .max()
                .unwrap_or(0)
        });
        let in_delta = self.taken.contains_key(&ids);
        if !in_index && !in_delta {
            self.taken.insert(ids.clone(), 0);
            return ids;
        }
        let next = self.taken.entry(ids.clone()).or_insert(0);
        let code = (*next).max(from_index);
        *next = code + 1;
        *disambiguated += 1;
        let mut out = ids;
        out.push(
            self.index
                .token_id(Token::new(dis_layer, code))
                .expect("disambiguation tokens fit u16"),
        );
        out
    }
}

/// Merges two iterators sorted by `(SID, id)`.
struct MergeSorted<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A, B> MergeSorted<A, B>
where
    A: Iterator<Item = (Vec<TokenId>, String)>,
    B: Iterator<Item = (Vec<TokenId>, String)>,
{
    fn new(a: A, b: B) -> Self {
        Self {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<A, B> Iterator for MergeSorted<A, B>
where
    A: Iterator<Item = (Vec<TokenId>, String)>,
    B: Iterator<Item = (Vec<TokenId>, String)>,
{
    type Item = (Vec<TokenId>, String);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if x <= y => self.a.next(),
            (Some(_), Some(_)) => self.b.next(),
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}
