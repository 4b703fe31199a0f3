//! Beam search over SID tokens, constrained by the index: each hypothesis
//! keeps its trie node, so the allowed next tokens are one slice lookup, and
//! only that slice of the model's scores is read. A complete SID that can be
//! extended further may also end here (the model's end-of-SID token), which
//! variable-length SIDs need. Requests are batched: one model call per step
//! for every live hypothesis of every request.

use crate::index::{Index, NodeId, TokenId};

/// A model that scores next tokens; token ids are the index's layer-tagged ids.
pub trait StepModel {
    /// Size of the score rows (SID token ids and the end-of-SID id must be below it).
    fn vocab(&self) -> usize;
    /// The end-of-SID token id.
    fn eos(&self) -> usize;
    /// Log-probabilities of the next token for each `(request, prefix)`;
    /// writes `prefixes.len() × vocab()` values, row-major.
    fn log_probs(&mut self, prefixes: &[(usize, &[TokenId])], out: &mut Vec<f32>);
}

/// Width, depth and result size of one search.
#[derive(Clone, Copy, Debug)]
pub struct BeamConfig {
    pub beam: usize,
    pub top_k: usize,
    /// Decode only SIDs the index holds (the default); otherwise any tokens,
    /// and invalid SIDs are counted.
    pub constrained: bool,
    /// Longest SID generated in unconstrained mode.
    pub max_len: usize,
}

/// One finished SID with its total log-probability (end-of-SID included).
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub sid: Vec<TokenId>,
    pub score: f32,
    /// Its node in the index; `None` for an invalid SID (unconstrained mode).
    pub node: Option<NodeId>,
}

/// The result of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BeamResult {
    /// Best first, at most `top_k`.
    pub sids: Vec<Generated>,
    /// How many of them no item has (always 0 when constrained).
    pub invalid: usize,
}

#[derive(Clone)]
struct Hyp {
    request: usize,
    tokens: Vec<TokenId>,
    /// `None` once off the trie (unconstrained mode only).
    node: Option<NodeId>,
    score: f32,
}

/// Candidate continuation: the hypothesis, and the token or `None` = end here.
struct Candidate {
    hyp: usize,
    token: Option<TokenId>,
    score: f32,
}

/// Runs beam search for `requests` (one per request id) against `index`.
pub fn beam_search(
    index: &Index,
    model: &mut dyn StepModel,
    requests: usize,
    cfg: &BeamConfig,
) -> Vec<BeamResult> {
    let beam = cfg.beam.max(1);
    let top_k = cfg.top_k.max(1);
    let vocab = model.vocab();
    let eos = model.eos();
    let max_len = if cfg.constrained {
        index.max_sid_len()
    } else {
        cfg.max_len
    };
    let mut live: Vec<Hyp> = (0..requests)
        .map(|r| Hyp {
            request: r,
            tokens: Vec::new(),
            node: Some(index.root()),
            score: 0.0,
        })
        .collect();
    let mut finished: Vec<Vec<Generated>> = vec![Vec::new(); requests];
    let mut scores = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    for _step in 0..=max_len {
        if live.is_empty() {
            break;
        }
        let prefixes: Vec<(usize, &[TokenId])> = live
            .iter()
            .map(|h| (h.request, h.tokens.as_slice()))
            .collect();
        model.log_probs(&prefixes, &mut scores);
        let mut next_live = Vec::with_capacity(live.len());
        for (r, done) in finished.iter_mut().enumerate() {
            candidates.clear();
            for (i, h) in live.iter().enumerate().filter(|(_, h)| h.request == r) {
                let row = &scores[i * vocab..(i + 1) * vocab];
                let at_max = h.tokens.len() >= max_len;
                if cfg.constrained {
                    let node = h.node.expect("constrained hypotheses stay on the trie");
                    if !at_max {
                        // Only the allowed slice is read.
                        for &t in index.children(node) {
                            candidates.push(Candidate {
                                hyp: i,
                                token: Some(t),
                                score: h.score + row[t as usize],
                            });
                        }
                    }
                    if index.is_terminal(node) {
                        candidates.push(Candidate {
                            hyp: i,
                            token: None,
                            score: h.score + row[eos],
                        });
                    }
                } else {
                    if !at_max {
                        for (t, &lp) in row.iter().enumerate().filter(|&(t, _)| t != eos) {
                            candidates.push(Candidate {
                                hyp: i,
                                token: Some(t as TokenId),
                                score: h.score + lp,
                            });
                        }
                    }
                    if !h.tokens.is_empty() {
                        candidates.push(Candidate {
                            hyp: i,
                            token: None,
                            score: h.score + row[eos],
                        });
                    }
                }
            }
            // The best `beam` continuations of this request (ties: earlier first).
            if candidates.len() > beam {
                candidates.select_nth_unstable_by(beam - 1, |a, b| b.score.total_cmp(&a.score));
                candidates.truncate(beam);
            }
            candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
            for c in &candidates {
                let h = &live[c.hyp];
                match c.token {
                    None => done.push(Generated {
                        sid: h.tokens.clone(),
                        score: c.score,
                        node: h.node.filter(|&n| index.is_terminal(n)),
                    }),
                    Some(t) => {
                        let mut tokens = h.tokens.clone();
                        tokens.push(t);
                        next_live.push(Hyp {
                            request: r,
                            tokens,
                            node: h.node.and_then(|n| index.child(n, t)),
                            score: c.score,
                        });
                    }
                }
            }
        }
        // A request is done once its k-th best finished SID beats every live one
        // (log-probabilities only lower a score).
        next_live.retain(|h| {
            let f = &mut finished[h.request];
            if f.len() < top_k {
                return true;
            }
            f.sort_by(|a, b| b.score.total_cmp(&a.score));
            h.score > f[top_k - 1].score
        });
        live = next_live;
    }
    finished
        .into_iter()
        .map(|mut f| {
            f.sort_by(|a, b| b.score.total_cmp(&a.score));
            f.truncate(top_k);
            let invalid = f.iter().filter(|g| g.node.is_none()).count();
            BeamResult { sids: f, invalid }
        })
        .collect()
}
