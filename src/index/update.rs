//! Catalog updates: new items get SIDs from the stored codebooks and the
//! stored mitigation rule (existing items keep theirs, so a trained generator
//! stays valid), removed items disappear, and the new version is written by
//! merging the old version's sorted stream with the sorted delta.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;

use super::reader::Index;
use super::store::{BuildSummary, IndexStore, copy_synced, write_version_files};
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
        // Hold the writer lock from reading the base to publishing, so that no
        // other writer's version is overwritten by one built from an older base.
        let lock = store.lock()?;
        let old = store.open_current_locked(&lock)?;
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

        let mut assigner = Disambiguator::new(&old);
        if let Some(table) = &self.upsert_sids {
            let mut ids = Vec::new();
            for (id, sid) in table.iter() {
                old.token_ids(sid, &mut ids)
                    .map_err(|e| IndexError::Input(format!("upsert SIDs, item {id:?}: {e}")))?;
                if deletes.contains(id) {
                    return Err(IndexError::Input(format!(
                        "item {id:?} is both upserted and deleted"
                    )));
                }
                let previous = old.sid(id);
                let sid = if previous.as_deref() == Some(ids.as_slice()) {
                    ids.clone() // re-pointed to the SID it has: unchanged
                } else {
                    assigner.assign_ids(ids.clone(), &mut disambiguated)?
                };
                if previous.is_some() {
                    replaced += 1;
                    removed.insert(id.to_owned());
                } else {
                    added += 1;
                }
                delta.push((sid, id.to_owned()));
            }
        }
        if let Some((x, dim, ids)) = &self.upsert_embeddings {
            if x.len() != ids.len() * dim {
                return Err(IndexError::Input(format!(
                    "upsert embeddings: {} values for {} ids of dimension {dim}",
                    x.len(),
                    ids.len()
                )));
            }
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
                let sid = assigner.assign(&sid, &mut disambiguated)?;
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
        let manifest = store.publish_locked(&lock, |dir| {
            let counts = write_version_files(dir, merged)?;
            if old_manifest.has_codebooks {
                copy_synced(&old_dir.join(CODEBOOKS_FILE), &dir.join(CODEBOOKS_FILE))?;
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

/// Hands out the next free disambiguation token under a SID already taken
/// (in the index or earlier in this update), in `disambiguate` mode.
struct Disambiguator<'a> {
    index: &'a Index,
    mode: CollisionMode,
    /// Next free disambiguation code under each SID this update has handed out.
    taken: HashMap<Vec<TokenId>, u32>,
}

impl<'a> Disambiguator<'a> {
    fn new(index: &'a Index) -> Self {
        Self {
            index,
            mode: index.manifest().collisions,
            taken: HashMap::new(),
        }
    }

    /// An encoded SID (quantizer tokens) made unique.
    fn assign(&mut self, sid: &[Token], count: &mut usize) -> Result<Vec<TokenId>, IndexError> {
        let ids = sid
            .iter()
            .map(|&t| self.index.token_id(t))
            .collect::<Result<Vec<_>, _>>()?;
        self.assign_ids(ids, count)
    }

    /// Token ids made unique: a trailing disambiguation token is replaced by
    /// the next free one when the SID is taken (nothing changes in share mode).
    fn assign_ids(
        &mut self,
        mut ids: Vec<TokenId>,
        count: &mut usize,
    ) -> Result<Vec<TokenId>, IndexError> {
        if self.mode == CollisionMode::Share {
            return Ok(ids);
        }
        let dis_layer = self.index.layout().disambiguation_layer();
        let given = ids.clone();
        if ids
            .last()
            .is_some_and(|&t| self.index.token(t).layer == dis_layer)
        {
            ids.pop();
        }
        let node = self.index.walk(&ids);
        let used_here = |n| self.index.is_terminal(n) || !self.index.children(n).is_empty();
        let in_index = node.is_some_and(used_here);
        let next_in_index = node.map_or(0, |n| {
            self.index
                .children(n)
                .iter()
                .map(|&t| self.index.token(t))
                .filter(|t| t.layer == dis_layer)
                .map(|t| t.code + 1)
                .max()
                .unwrap_or(0)
        });
        let given_free = !self
            .index
            .walk(&given)
            .is_some_and(|n| self.index.is_terminal(n))
            && !self.taken.contains_key(&given);
        if !in_index && !self.taken.contains_key(&ids) {
            self.taken.insert(ids.clone(), 0);
            return Ok(ids);
        }
        if given.len() > ids.len() && given_free {
            // An explicit disambiguation token that is still free is kept.
            let code = self.index.token(given[given.len() - 1]).code;
            let next = self.taken.entry(ids).or_insert(0);
            *next = (*next).max(code + 1);
            self.taken.insert(given.clone(), 0);
            return Ok(given);
        }
        let next = self.taken.entry(ids.clone()).or_insert(0);
        let code = (*next).max(next_in_index);
        *next = code + 1;
        *count += 1;
        ids.push(self.index.token_id(Token::new(dis_layer, code))?);
        Ok(ids)
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
