//! Requests checked and turned into typed values before any work is done:
//! one function per request kind, one error per broken rule, each naming
//! the field. Nothing here needs a server; the fuzz targets call it directly.
//!
//! Both spellings of a SID — `(layer, code)` tokens and layer-tagged token
//! ids — follow the same rules: a token outside the layout (layer 0 or past
//! L + 1, a code past its codebook, an id past the index's token space) or
//! layers that do not increase is INVALID_ARGUMENT; a well-formed prefix
//! that no SID starts with is answered `valid: false`.

use std::time::{Duration, Instant};

use crate::catalog::{CatalogUpdate, Embeddings};
use crate::generate::{GenerationRequest, History};
use crate::index::{Index, TOKEN_ID_LIMIT, TokenId};
use crate::proto::v1::{
    CatalogChange, GenerateRequest, LookupRequest, NextTokensRequest, Sid, catalog_change,
};
use crate::sid::{SidHeader, SidTable, Token};

/// Why a request was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("version: {asked} is not served (serving {serving})")]
    VersionNotServed { asked: u64, serving: u64 },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Prefixes (or SIDs) as token ids, stored flat.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prefixes {
    ids: Vec<TokenId>,
    ends: Vec<usize>,
}

impl Prefixes {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[TokenId]> + '_ {
        (0..self.ends.len()).map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.ids[start..self.ends[i]]
        })
    }

    fn push_tokens(&mut self, index: &Index, field: &str, sid: &Sid) -> Result<(), RequestError> {
        let mut prev = 0u8;
        for (j, t) in sid.tokens.iter().enumerate() {
            let field = || format!("{field}.tokens[{j}]");
            let layer = u8::try_from(t.layer)
                .ok()
                .filter(|&l| l > 0)
                .ok_or_else(|| invalid(field(), format!("layer {} is not in 1..=255", t.layer)))?;
            let token = Token::new(layer, t.code);
            let id = index
                .token_id(token)
                .map_err(|e| invalid(field(), e.to_string()))?;
            check_order(&field(), prev, layer)?;
            prev = layer;
            self.ids.push(id);
        }
        self.ends.push(self.ids.len());
        Ok(())
    }

    fn push_ids(&mut self, index: &Index, field: &str, ids: &[u32]) -> Result<(), RequestError> {
        let mut prev = 0u8;
        for (j, &id) in ids.iter().enumerate() {
            let field = || format!("{field}.ids[{j}]");
            let id = TokenId::try_from(id).map_err(|_| {
                invalid(
                    field(),
                    format!("token id {id} is not below {TOKEN_ID_LIMIT}"),
                )
            })?;
            let layer = index.token(id).layer;
            check_order(&field(), prev, layer)?;
            prev = layer;
            self.ids.push(id);
        }
        self.ends.push(self.ids.len());
        Ok(())
    }
}

fn check_order(field: &str, prev: u8, layer: u8) -> Result<(), RequestError> {
    if layer <= prev {
        return Err(invalid(
            field,
            format!("layer {layer} after layer {prev}: layers must increase along a SID"),
        ));
    }
    Ok(())
}

fn check_batch(field: &str, n: usize, max: usize) -> Result<(), RequestError> {
    if n > max {
        return Err(invalid(
            field,
            format!("{n} entries exceed the limit of {max} per request"),
        ));
    }
    Ok(())
}

fn check_len(field: &str, len: usize, max: usize) -> Result<(), RequestError> {
    if len > max {
        return Err(invalid(
            field,
            format!("{len} tokens, longer than any SID in the index ({max})"),
        ));
    }
    Ok(())
}

/// A NextTokens request: the prefixes to expand, and the form of the answers.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidNextTokens {
    pub prefixes: Prefixes,
    pub answers: AnswerForm,
}

/// How NextTokens answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerForm {
    /// `results[i].allowed`, (layer, code) tokens (asked by `prefixes`).
    Tokens,
    /// `results[i].allowed_ids` (asked by `prefix_ids`).
    Ids,
    /// `packed` (asked by `packed`, either spelling).
    Packed,
}

pub fn next_tokens(
    req: &NextTokensRequest,
    index: &Index,
    max_batch: usize,
) -> Result<ValidNextTokens, RequestError> {
    if req.version != 0 && req.version != index.version() {
        return Err(RequestError::VersionNotServed {
            asked: req.version,
            serving: index.version(),
        });
    }
    let max_len = index.max_sid_len();
    let mut prefixes = Prefixes::default();
    if !req.prefixes.is_empty() {
        check_batch("prefixes", req.prefixes.len(), max_batch)?;
        for (i, p) in req.prefixes.iter().enumerate() {
            let field = format!("prefixes[{i}]");
            prefixes.push_tokens(index, &field, p)?;
            check_len(&field, p.tokens.len(), max_len)?;
        }
        Ok(ValidNextTokens {
            prefixes,
            answers: if req.packed {
                AnswerForm::Packed
            } else {
                AnswerForm::Tokens
            },
        })
    } else if !req.prefix_ids.is_empty() {
        check_batch("prefix_ids", req.prefix_ids.len(), max_batch)?;
        for (i, p) in req.prefix_ids.iter().enumerate() {
            let field = format!("prefix_ids[{i}]");
            check_len(&field, p.ids.len(), max_len)?;
            prefixes.push_ids(index, &field, &p.ids)?;
        }
        Ok(ValidNextTokens {
            prefixes,
            answers: if req.packed {
                AnswerForm::Packed
            } else {
                AnswerForm::Ids
            },
        })
    } else {
        Err(invalid(
            "prefixes",
            "empty batch (send prefixes or prefix_ids; the root is an empty Sid)",
        ))
    }
}

/// A Lookup request: SIDs whose items are wanted, and item ids whose SIDs are.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidLookup {
    pub sids: Prefixes,
    pub item_ids: Vec<String>,
}

pub fn lookup(
    req: LookupRequest,
    index: &Index,
    max_batch: usize,
) -> Result<ValidLookup, RequestError> {
    if req.sids.is_empty() && req.item_ids.is_empty() {
        return Err(invalid("sids, item_ids", "empty batch"));
    }
    check_batch("sids", req.sids.len(), max_batch)?;
    check_batch("item_ids", req.item_ids.len(), max_batch)?;
    let mut sids = Prefixes::default();
    for (i, sid) in req.sids.iter().enumerate() {
        sids.push_tokens(index, &format!("sids[{i}]"), sid)?;
    }
    Ok(ValidLookup {
        sids,
        item_ids: req.item_ids,
    })
}

fn check_item_id(field: &str, id: &str) -> Result<(), RequestError> {
    if id.is_empty() || id.contains(['\t', '\n', '\r']) {
        return Err(invalid(
            format!("{field}.item_id"),
            format!("{id:?} is empty or holds a tab or line break"),
        ));
    }
    Ok(())
}

/// The changes of an ApplyCatalogUpdate stream, checked one by one as they
/// arrive (so a bad change ends the stream at once) and bounded in number.
pub struct UpdateRequest {
    sids: SidTable,
    embeddings: Vec<f32>,
    embedding_ids: Vec<String>,
    dim: Option<usize>,
    deletes: Vec<String>,
    changes: usize,
    max_changes: usize,
}

impl UpdateRequest {
    /// An empty update against `index`'s layout.
    pub fn new(index: &Index, max_changes: usize) -> Self {
        Self {
            sids: SidTable::new(SidHeader::new(index.layout(), index.manifest().collisions)),
            embeddings: Vec::new(),
            embedding_ids: Vec::new(),
            dim: None,
            deletes: Vec::new(),
            changes: 0,
            max_changes,
        }
    }

    /// Checks and records the next change.
    pub fn add(&mut self, index: &Index, change: CatalogChange) -> Result<(), RequestError> {
        if self.changes >= self.max_changes {
            return Err(invalid(
                "changes",
                format!("more than {} in one update", self.max_changes),
            ));
        }
        let field = format!("changes[{}]", self.changes);
        self.changes += 1;
        match change.change {
            Some(catalog_change::Change::UpsertEmbedding(u)) => {
                check_item_id(&field, &u.item_id)?;
                let d = *self.dim.get_or_insert(u.embedding.len());
                if u.embedding.len() != d || d == 0 || u.embedding.iter().any(|v| !v.is_finite()) {
                    return Err(invalid(
                        format!("{field}.embedding"),
                        format!("{} values, expected {d} finite values", u.embedding.len()),
                    ));
                }
                self.embeddings.extend_from_slice(&u.embedding);
                self.embedding_ids.push(u.item_id);
            }
            Some(catalog_change::Change::UpsertSid(u)) => {
                check_item_id(&field, &u.item_id)?;
                let sid = u.sid.unwrap_or_default();
                if sid.tokens.is_empty() {
                    return Err(invalid(format!("{field}.sid"), "empty"));
                }
                let mut one = Prefixes::default();
                one.push_tokens(index, &format!("{field}.sid"), &sid)?;
                let tokens = index.tokens(one.iter().next().unwrap_or_default());
                self.sids.push(u.item_id, &tokens);
            }
            Some(catalog_change::Change::DeleteItemId(id)) => {
                if id.is_empty() {
                    return Err(invalid(format!("{field}.delete_item_id"), "empty"));
                }
                self.deletes.push(id);
            }
            None => return Err(invalid(field, "no change set")),
        }
        Ok(())
    }

    /// The update, once the stream has ended cleanly.
    pub fn finish(self) -> Result<CatalogUpdate, RequestError> {
        if self.changes == 0 {
            return Err(invalid("changes", "empty update"));
        }
        Ok(CatalogUpdate {
            upsert_sids: (!self.sids.is_empty()).then_some(self.sids),
            upsert_embeddings: self.dim.map(|dim| Embeddings {
                values: self.embeddings,
                dim,
                ids: self.embedding_ids,
            }),
            deletes: self.deletes,
        })
    }
}

/// A Generate request as the engine takes it (beam, top-k and the history's
/// contents are checked by the engine against its limits and the index).
pub fn generate(
    msg: GenerateRequest,
    default_wait: Duration,
) -> Result<GenerationRequest, RequestError> {
    let history = match (
        msg.history_item_ids.is_empty(),
        msg.history_token_ids.is_empty(),
    ) {
        (false, true) => History::Items(msg.history_item_ids),
        (true, false) => History::Tokens(msg.history_token_ids),
        (true, true) => {
            return Err(invalid(
                "history_item_ids",
                "empty (give history_item_ids or history_token_ids)",
            ));
        }
        (false, false) => {
            return Err(invalid(
                "history_token_ids",
                "give history_item_ids or history_token_ids, not both",
            ));
        }
    };
    let wait = match msg.deadline_ms {
        0 => default_wait,
        ms => Duration::from_millis(u64::from(ms)),
    };
    Ok(GenerationRequest {
        history,
        beam: msg.beam_width.map(|b| b as usize),
        top_k: msg.top_k.map(|k| k as usize),
        constrained: msg.constrained.unwrap_or(true),
        deadline: Some(Instant::now() + wait),
    })
}
