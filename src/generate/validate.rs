//! A generation request validated into what the search runs: its prompt and
//! beam configuration, checked against the limits, the model's sidecar and
//! the index version it pins. One error per rule, each naming its field;
//! nothing here needs ONNX Runtime or a server.

use std::time::Instant;

use super::beam::BeamConfig;
use super::limits::GeneratorLimits;
use super::sidecar::Sidecar;
use crate::index::Index;

/// A user's history, oldest first.
#[derive(Clone, Debug)]
pub enum History {
    /// Item ids, mapped to SIDs through the index.
    Items(Vec<String>),
    /// The model's own vocabulary ids, used verbatim as the prompt.
    Tokens(Vec<u32>),
}

/// One generation request, as a caller states it; no beam / top-k means the defaults.
#[derive(Clone, Debug)]
pub struct GenerationRequest {
    pub history: History,
    pub beam: Option<usize>,
    pub top_k: Option<usize>,
    pub constrained: bool,
    /// Give up if the request has not started by then.
    pub deadline: Option<Instant>,
}

/// A request that passed every rule: what the model thread runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidRequest {
    /// Vocabulary ids.
    pub prompt: Vec<i64>,
    pub config: BeamConfig,
    pub deadline: Option<Instant>,
}

/// The rule a request broke.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("beam_width: {beam} is not in 1..={max}")]
    BeamWidth { beam: usize, max: usize },
    #[error("top_k: {top_k} is not in 1..=beam_width ({beam})")]
    TopK { top_k: usize, beam: usize },
    #[error("{field}: is empty")]
    EmptyHistory { field: &'static str },
    #[error("{field}: has {len} entries, more than the limit {max}")]
    LongHistory {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("history_item_ids: [{position}] item {item:?} is not in index version {version}")]
    UnknownItem {
        position: usize,
        item: String,
        version: u64,
    },
    #[error(
        "history_token_ids: {len} tokens leave no room for a SID in max_positions {max_positions}"
    )]
    NoRoomForSid { len: usize, max_positions: u32 },
    #[error(
        "history_token_ids: [{position}] token {token} is not below the vocabulary size {vocab}"
    )]
    TokenOutOfVocabulary {
        position: usize,
        token: u32,
        vocab: u32,
    },
}

impl RequestError {
    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            RequestError::BeamWidth { .. } => "beam_width",
            RequestError::TopK { .. } => "top_k",
            RequestError::EmptyHistory { field } | RequestError::LongHistory { field, .. } => field,
            RequestError::UnknownItem { .. } => "history_item_ids",
            RequestError::NoRoomForSid { .. } | RequestError::TokenOutOfVocabulary { .. } => {
                "history_token_ids"
            }
        }
    }
}

impl ValidRequest {
    /// Checks `req` against the limits and the index version it pins, and
    /// makes its prompt and search configuration.
    pub fn new(
        limits: &GeneratorLimits,
        sidecar: &Sidecar,
        index: &Index,
        req: &GenerationRequest,
    ) -> Result<Self, RequestError> {
        let beam = req.beam.unwrap_or(limits.default_beam);
        if beam == 0 || beam > limits.max_beam {
            return Err(RequestError::BeamWidth {
                beam,
                max: limits.max_beam,
            });
        }
        let top_k = req.top_k.unwrap_or(limits.default_top_k.min(beam));
        if top_k == 0 || top_k > beam {
            return Err(RequestError::TopK { top_k, beam });
        }
        let prompt = match &req.history {
            History::Items(ids) => item_prompt(limits, sidecar, index, ids)?,
            History::Tokens(ids) => token_prompt(limits, sidecar, index, ids)?,
        };
        let config = BeamConfig {
            beam,
            top_k,
            constrained: req.constrained,
            max_len: limits.max_sid_len.min(index.max_sid_len().max(1) + 1),
        };
        Ok(ValidRequest {
            prompt,
            config,
            deadline: req.deadline,
        })
    }
}

fn item_prompt(
    limits: &GeneratorLimits,
    sidecar: &Sidecar,
    index: &Index,
    ids: &[String],
) -> Result<Vec<i64>, RequestError> {
    check_history_len("history_item_ids", ids.len(), limits.max_history)?;
    let mut sids = Vec::with_capacity(ids.len());
    for (position, id) in ids.iter().enumerate() {
        let sid = index.sid(id).ok_or_else(|| RequestError::UnknownItem {
            position,
            item: id.clone(),
            version: index.version(),
        })?;
        sids.push(sid);
    }
    Ok(sidecar.prompt(sids.iter().map(Vec::as_slice), index.max_sid_len()))
}

fn token_prompt(
    limits: &GeneratorLimits,
    sidecar: &Sidecar,
    index: &Index,
    ids: &[u32],
) -> Result<Vec<i64>, RequestError> {
    check_history_len("history_token_ids", ids.len(), limits.max_history)?;
    let room = (sidecar.max_positions as usize).saturating_sub(index.max_sid_len() + 1);
    if ids.len() > room {
        return Err(RequestError::NoRoomForSid {
            len: ids.len(),
            max_positions: sidecar.max_positions,
        });
    }
    if let Some((position, &token)) = ids
        .iter()
        .enumerate()
        .find(|(_, t)| **t >= sidecar.vocab_size)
    {
        return Err(RequestError::TokenOutOfVocabulary {
            position,
            token,
            vocab: sidecar.vocab_size,
        });
    }
    Ok(ids.iter().map(|&t| i64::from(t)).collect())
}

fn check_history_len(field: &'static str, len: usize, max: usize) -> Result<(), RequestError> {
    match len {
        0 => Err(RequestError::EmptyHistory { field }),
        len if len > max => Err(RequestError::LongHistory { field, len, max }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::BatchModel;
    use crate::generate::synthetic::SyntheticModel;
    use crate::index::{IndexStore, build_from_table};
    use crate::sid::{CollisionMode, Layout, SidHeader, SidTable, Token};

    fn index(dir: &std::path::Path) -> Index {
        let layout = Layout::new(vec![4, 4]).unwrap();
        let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
        for i in 0..8u32 {
            t.push(
                format!("i{i}"),
                &[Token::new(1, i % 4), Token::new(2, i / 2)],
            );
        }
        let store = IndexStore::new(dir);
        build_from_table(&store, &t, "test", None).unwrap();
        store.open_current().unwrap()
    }

    fn request(history: History) -> GenerationRequest {
        GenerationRequest {
            history,
            beam: None,
            top_k: None,
            constrained: true,
            deadline: None,
        }
    }

    fn items(ids: &[&str]) -> History {
        History::Items(ids.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn each_rule_has_its_error_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let index = index(dir.path());
        let model = SyntheticModel::new(vec![4, 4], index.used_token_limit(), 1);
        let sidecar = model.sidecar();
        let limits = GeneratorLimits {
            max_history: 3,
            ..GeneratorLimits::default()
        };
        let check = |r: GenerationRequest| ValidRequest::new(&limits, sidecar, &index, &r);
        let sized = |beam, top_k| GenerationRequest {
            beam: Some(beam),
            top_k: Some(top_k),
            ..request(items(&["i0"]))
        };
        let cases: Vec<(GenerationRequest, RequestError)> = vec![
            (sized(0, 1), RequestError::BeamWidth { beam: 0, max: 512 }),
            (
                sized(513, 1),
                RequestError::BeamWidth {
                    beam: 513,
                    max: 512,
                },
            ),
            (sized(4, 5), RequestError::TopK { top_k: 5, beam: 4 }),
            (sized(4, 0), RequestError::TopK { top_k: 0, beam: 4 }),
            (
                request(items(&[])),
                RequestError::EmptyHistory {
                    field: "history_item_ids",
                },
            ),
            (
                request(items(&["i0", "i1", "i2", "i3"])),
                RequestError::LongHistory {
                    field: "history_item_ids",
                    len: 4,
                    max: 3,
                },
            ),
            (
                request(items(&["i0", "nope"])),
                RequestError::UnknownItem {
                    position: 1,
                    item: "nope".into(),
                    version: index.version(),
                },
            ),
            (
                request(History::Tokens(vec![])),
                RequestError::EmptyHistory {
                    field: "history_token_ids",
                },
            ),
            (
                request(History::Tokens(vec![1, sidecar.vocab_size])),
                RequestError::TokenOutOfVocabulary {
                    position: 1,
                    token: sidecar.vocab_size,
                    vocab: sidecar.vocab_size,
                },
            ),
        ];
        for (req, want) in cases {
            let got = check(req).unwrap_err();
            assert_eq!(got, want);
            assert!(got.to_string().starts_with(got.field()), "{got}");
        }
        let roomy = GeneratorLimits {
            max_history: 10_000,
            ..GeneratorLimits::default()
        };
        let long = vec![1; sidecar.max_positions as usize];
        assert_eq!(
            ValidRequest::new(&roomy, sidecar, &index, &request(History::Tokens(long))),
            Err(RequestError::NoRoomForSid {
                len: sidecar.max_positions as usize,
                max_positions: sidecar.max_positions,
            })
        );
    }

    #[test]
    fn a_valid_request_gets_its_prompt_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let index = index(dir.path());
        let model = SyntheticModel::new(vec![4, 4], index.used_token_limit(), 1);
        let limits = GeneratorLimits::default();
        let v = ValidRequest::new(
            &limits,
            model.sidecar(),
            &index,
            &request(items(&["i1", "i2"])),
        )
        .unwrap();
        let sids = [index.sid("i1").unwrap(), index.sid("i2").unwrap()];
        let want = model
            .sidecar()
            .prompt(sids.iter().map(Vec::as_slice), index.max_sid_len());
        assert_eq!(v.prompt, want);
        assert_eq!(v.config.beam, limits.default_beam);
        assert_eq!(v.config.top_k, limits.default_top_k);
        assert_eq!(v.config.max_len, index.max_sid_len() + 1);
    }
}
