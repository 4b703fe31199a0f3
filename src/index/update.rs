//! Catalog updates: new items get SIDs from the stored codebooks and the
//! stored mitigation rule (existing items keep theirs, so a trained generator
//! stays valid), removed items disappear, and the new version is written by
//! merging the old version's sorted stream with the sorted delta.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;

use super::reader::Index;
use super::store::WriterLock;
use super::store::{BuildSummary, IndexStore, copy_synced, write_version_files};
use super::{IndexError, TokenId};
use crate::quantize::CODEBOOKS_FILE;
use crate::sid::{CollisionMode, SidTable, Token};

/// SIDs to change in an index (embeddings are the catalog's business:
/// [`crate::catalog::CatalogUpdate`] turns them into SIDs first).
#[derive(Default)]
pub struct SidUpdate {
    /// Items with SIDs: new ones are added, existing ones re-pointed.
    pub upsert_sids: Option<SidTable>,
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
    /// Existing items sent as embeddings: their SID is kept (set by the catalog).
    pub kept: usize,
    pub deleted: usize,
    pub disambiguated: usize,
}

impl SidUpdate {
    /// Applies the update to the current version of `store` and publishes
    /// the result — all of it or, on any error, nothing.
    ///
    /// SIDs in `disambiguate` mode stay unique: an explicit SID that ends
    /// with a disambiguation token is taken as given if no other item holds
    /// it and refused (`SidTaken`, naming the holder) if one does; a SID of
    /// quantizer tokens only is taken as is when neither it nor any SID
    /// under it with a disambiguation token is held, and otherwise gets the
    /// next disambiguation code (one past the highest the index or this
    /// update has used under it). Explicit SIDs are placed first, so the
    /// order of changes within one update does not matter. An existing item
    /// upserted with its own SID (or its quantizer tokens) keeps it.
    pub fn apply(self, store: &IndexStore) -> Result<UpdateSummary, IndexError> {
        // Hold the writer lock from reading the base to publishing, so that no
        // other writer's version is overwritten by one built from an older base.
        let lock = store.lock()?;
        let base = store.open_current_locked(&lock)?;
        self.apply_locked(store, &lock, &base)
    }

    /// [`SidUpdate::apply`] on `old`, the current version read under `lock`.
    pub(crate) fn apply_locked(
        self,
        store: &IndexStore,
        lock: &WriterLock,
        old: &Index,
    ) -> Result<UpdateSummary, IndexError> {
        let t0 = Instant::now();
        let deletes: HashSet<&str> = self.deletes.iter().map(String::as_str).collect();
        for (i, id) in self.deletes.iter().enumerate() {
            if old.sid(id).is_none() {
                return Err(IndexError::UnknownItem {
                    field: format!("deletes, entry {}", i + 1),
                    id: id.clone(),
                });
            }
        }
        let (mut added, mut replaced) = (0, 0);

        // The upserts as (item id, wanted token ids, the item's old SID).
        let mut wanted: Vec<(String, Vec<TokenId>, Option<Vec<TokenId>>)> = Vec::new();
        if let Some(table) = &self.upsert_sids {
            let mut ids = Vec::new();
            for (id, sid) in table.iter() {
                old.token_ids(sid, &mut ids)
                    .map_err(|e| IndexError::Input(format!("upsert SIDs, item {id:?}: {e}")))?;
                wanted.push((id.to_owned(), ids.clone(), old.sid(id)));
            }
        }
        let mut seen = HashSet::with_capacity(wanted.len());
        for (id, _, _) in &wanted {
            if deletes.contains(id.as_str()) {
                return Err(IndexError::Input(format!(
                    "item {id:?} is both upserted and deleted"
                )));
            }
            if !seen.insert(id.as_str()) {
                return Err(IndexError::Input(format!("item {id:?} is upserted twice")));
            }
        }

        // Items whose old SID goes away: the deleted and the upserted ones.
        let mut removed: HashSet<String> = deletes.iter().map(|s| s.to_string()).collect();
        removed.extend(
            wanted
                .iter()
                .filter(|(_, _, prev)| prev.is_some())
                .map(|(id, _, _)| id.clone()),
        );
        let mut assigner = Disambiguator::new(old, &removed);
        let mut delta: Vec<(Vec<TokenId>, String)> = Vec::with_capacity(wanted.len());
        let mut placed: Vec<Option<Vec<TokenId>>> = vec![None; wanted.len()];
        // Items keeping their SIDs first, then explicit SIDs, then the rest.
        for pass in [Pass::Kept, Pass::Explicit, Pass::Assigned] {
            for (k, (id, sid, prev)) in wanted.iter().enumerate() {
                if placed[k].is_some() {
                    continue;
                }
                let field = format!("upsert of item {id:?}");
                placed[k] = assigner.place(pass, &field, id, sid, prev.as_deref())?;
            }
        }
        for ((id, _, prev), sid) in wanted.into_iter().zip(placed) {
            let sid = sid.expect("every upsert is placed in the second pass");
            if prev.is_some() {
                replaced += 1;
            } else {
                added += 1;
            }
            delta.push((sid, id));
        }
        delta.sort_unstable();

        let mut layer_counts = old.manifest().layer_counts.clone();
        let old_entries = old
            .entries()
            .filter(|(_, id)| !removed.contains(id.as_ref()))
            .map(|(s, id)| (s, id.into_owned()));
        let mut sid = Vec::new();
        for id in &removed {
            if old.sid_into(id, &mut sid) {
                count(old, &mut layer_counts, &sid, -1);
            }
        }
        for (sid, _) in &delta {
            count(old, &mut layer_counts, sid, 1);
        }
        let merged = MergeSorted::new(old_entries, delta.into_iter());
        let previous_version = old.version();
        let old_dir = old.dir().to_owned();
        let old_manifest = old.manifest().clone();
        let disambiguated = assigner.disambiguated;
        let manifest = store.publish_locked(lock, |dir| {
            let counts = write_version_files(dir, old_manifest.format_version, merged)?;
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
            kept: 0,
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

/// Which upserts a pass places.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Existing items sent with their own SID.
    Kept,
    /// Explicit full SIDs (ending with a disambiguation token).
    Explicit,
    /// Everything else: SIDs of quantizer tokens, disambiguated if taken.
    Assigned,
}

/// Keeps SIDs unique in `disambiguate` mode (see [`CatalogUpdate::apply`]);
/// in `share` mode every SID is taken as given.
struct Disambiguator<'a> {
    index: &'a Index,
    mode: CollisionMode,
    dis_layer: u8,
    /// Items whose old SID is freed by this update.
    removed: &'a HashSet<String>,
    /// Full SIDs this update has placed, and the item holding each.
    placed: HashMap<Vec<TokenId>, String>,
    /// Next disambiguation code under each base SID this update has used.
    next_code: HashMap<Vec<TokenId>, u32>,
    /// Upserts that received a disambiguation token.
    disambiguated: usize,
}

impl<'a> Disambiguator<'a> {
    fn new(index: &'a Index, removed: &'a HashSet<String>) -> Self {
        Self {
            index,
            mode: index.manifest().collisions,
            dis_layer: index.layout().disambiguation_layer(),
            removed,
            placed: HashMap::new(),
            next_code: HashMap::new(),
            disambiguated: 0,
        }
    }

    fn is_disambiguation(&self, t: TokenId) -> bool {
        self.index.token(t).layer == self.dis_layer
    }

    /// The item that holds `sid` after this update, if any.
    fn holder(&self, sid: &[TokenId]) -> Option<String> {
        if let Some(id) = self.placed.get(sid) {
            return Some(id.clone());
        }
        self.index
            .items(sid)
            .find(|id| !self.removed.contains(id.as_ref()))
            .map(std::borrow::Cow::into_owned)
    }

    /// Places one upsert in `pass`, or leaves it (`None`) for a later pass
    /// (share mode places everything as given in the first).
    fn place(
        &mut self,
        pass: Pass,
        field: &str,
        id: &str,
        sid: &[TokenId],
        previous: Option<&[TokenId]>,
    ) -> Result<Option<Vec<TokenId>>, IndexError> {
        if self.mode == CollisionMode::Share {
            return Ok(Some(sid.to_vec()));
        }
        let explicit = sid.last().is_some_and(|&t| self.is_disambiguation(t));
        let base = if explicit { &sid[..sid.len() - 1] } else { sid };
        // An existing item sent with its own SID, or its own quantizer tokens, keeps its SID.
        let keeps = previous
            .filter(|p| *p == sid || (!explicit && p.len() == sid.len() + 1 && p.starts_with(sid)));
        let chosen = match (pass, keeps) {
            (Pass::Kept, Some(p)) => p.to_vec(),
            (Pass::Kept, None) => return Ok(None),
            (Pass::Explicit, _) if explicit => {
                if let Some(holder) = self.holder(sid) {
                    return Err(IndexError::SidTaken {
                        field: field.to_owned(),
                        sid: crate::sid::DisplaySid(&self.index.tokens(sid)).to_string(),
                        holder,
                    });
                }
                sid.to_vec()
            }
            (Pass::Explicit, _) => return Ok(None),
            (Pass::Assigned, _) if !self.collides(base) => base.to_vec(),
            (Pass::Assigned, _) => {
                let code = self.next_free_code(base);
                let token = Token::new(self.dis_layer, code);
                let t = self.index.token_id(token).map_err(|e| {
                    IndexError::Input(format!(
                        "{field}: no disambiguation code left under SID {}: {e}",
                        crate::sid::DisplaySid(&self.index.tokens(base))
                    ))
                })?;
                self.disambiguated += 1;
                let mut full = base.to_vec();
                full.push(t);
                full
            }
        };
        if let Some(&t) = chosen.last().filter(|&&t| self.is_disambiguation(t)) {
            let base = chosen[..chosen.len() - 1].to_vec();
            let next = self.next_code.entry(base).or_insert(0);
            *next = (*next).max(self.index.token(t).code + 1);
        }
        self.placed.insert(chosen.clone(), id.to_owned());
        Ok(Some(chosen))
    }

    /// Whether a base SID is held, or any SID of it plus a disambiguation token.
    fn collides(&self, base: &[TokenId]) -> bool {
        if self.holder(base).is_some() || self.next_code.contains_key(base) {
            return true;
        }
        let Some(node) = self.index.walk(base) else {
            return false;
        };
        let mut full = base.to_vec();
        self.index
            .children(node)
            .iter()
            .filter(|&&t| self.is_disambiguation(t))
            .any(|&t| {
                full.truncate(base.len());
                full.push(t);
                self.holder(&full).is_some()
            })
    }

    /// One past the highest disambiguation code the index or this update has
    /// used under `base` (0 if none): codes are never handed out twice.
    fn next_free_code(&self, base: &[TokenId]) -> u32 {
        let in_index = self.index.walk(base).map_or(0, |n| {
            self.index
                .children(n)
                .iter()
                .filter(|&&t| self.is_disambiguation(t))
                .map(|&t| self.index.token(t).code + 1)
                .max()
                .unwrap_or(0)
        });
        in_index.max(self.next_code.get(base).copied().unwrap_or(0))
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
