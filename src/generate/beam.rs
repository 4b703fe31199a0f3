//! Beam search over SID tokens, constrained by the index: each hypothesis
//! keeps its trie node, so the allowed next tokens are one slice lookup, and
//! only that slice of the model's scores is read. A complete SID that can be
//! extended further may also end here (the model's end-of-SID token), which
//! variable-length SIDs need. Requests are batched: one model call per step
//! for every live hypothesis of every request.

use std::time::{Duration, Instant};

use crate::index::{Index, NodeId, TokenId};

/// A model failure during a search (the runtime's own error, boxed).
pub type ModelError = Box<dyn std::error::Error + Send + Sync>;

/// One hypothesis to score: its request, its row in the previous call (`None`
/// on the first call, where every request has one row with an empty SID) and
/// the SID tokens so far. A model with a KV cache follows `parent`; one
/// without reads `sid`.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    pub request: usize,
    pub parent: Option<usize>,
    pub sid: &'a [TokenId],
}

/// A model that scores next tokens for a batch of requests — only the
/// tokens a search can choose: a score row holds SID token `t` (the index's
/// layer-tagged id) at `t`, for `t < sid_tokens()`, and end-of-SID last. A
/// model with a larger vocabulary (an LLM's) normalizes over all of it but
/// hands over this slice alone.
pub trait StepModel {
    /// How many SID token ids the model knows; the unconstrained search
    /// chooses among these, and a row is `sid_tokens() + 1` wide.
    fn sid_tokens(&self) -> usize;
    /// Log-probabilities (≤ 0, the search relies on it) of each row's next
    /// SID token and of end-of-SID; writes `rows.len() × (sid_tokens() + 1)`
    /// values, row-major.
    fn log_probs(&mut self, rows: &[Row<'_>], out: &mut Vec<f32>) -> Result<(), ModelError>;
}

/// Width, depth and result size of one request's search.
#[derive(Clone, Copy, Debug, PartialEq)]
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

/// Results of a batch, with where the time went.
#[derive(Clone, Debug, Default)]
pub struct Search {
    /// One per request, in request order.
    pub results: Vec<BeamResult>,
    /// Model calls made.
    pub steps: usize,
    /// Time inside the model.
    pub model_time: Duration,
    /// Time in the search itself: trie lookups, candidate selection, bookkeeping.
    pub search_time: Duration,
}

#[derive(Clone)]
struct Hyp {
    request: usize,
    /// Its row in the previous model call.
    parent: Option<usize>,
    tokens: SidBuf,
    /// `None` once off the trie (unconstrained mode only).
    node: Option<NodeId>,
    score: f32,
}

/// Longest SID a search builds (hypotheses keep their tokens inline).
pub const MAX_SID_LEN: usize = 15;

/// A SID prefix stored inline: copying one is 32 bytes, never an allocation.
#[derive(Clone, Copy, Default)]
struct SidBuf {
    len: u8,
    tokens: [TokenId; MAX_SID_LEN],
}

impl SidBuf {
    fn as_slice(&self) -> &[TokenId] {
        &self.tokens[..usize::from(self.len)]
    }

    fn len(&self) -> usize {
        usize::from(self.len)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// This prefix plus `t` (callers keep the length below `MAX_SID_LEN`).
    fn with(mut self, t: TokenId) -> Self {
        self.tokens[usize::from(self.len)] = t;
        self.len += 1;
        self
    }
}

/// Candidate continuation: the hypothesis, and the token or `None` = end here.
struct Candidate {
    hyp: usize,
    token: Option<TokenId>,
    score: f32,
}

/// The best `beam` candidates of one request, kept without storing them all:
/// whenever the pool holds `8 × beam + 256`, it is cut back to the best
/// `beam`, and the worst of those becomes the floor a new candidate must beat
/// (one comparison rejects most candidates).
struct Pool<'a> {
    items: &'a mut Vec<Candidate>,
    beam: usize,
    /// Candidates at or below this cannot make the beam.
    floor: f32,
}

impl<'a> Pool<'a> {
    fn new(items: &'a mut Vec<Candidate>, beam: usize) -> Self {
        items.clear();
        Pool {
            items,
            beam,
            floor: f32::NEG_INFINITY,
        }
    }

    #[inline]
    fn offer(&mut self, hyp: usize, token: Option<TokenId>, score: f32) {
        // Written so that a NaN score never enters.
        if score > self.floor {
            self.items.push(Candidate { hyp, token, score });
            if self.items.len() >= 8 * self.beam + 256 {
                self.cut();
                self.floor = self.items[self.beam - 1].score;
            }
        }
    }

    fn cut(&mut self) {
        if self.items.len() > self.beam {
            self.items
                .select_nth_unstable_by(self.beam - 1, |a, b| b.score.total_cmp(&a.score));
            self.items.truncate(self.beam);
        }
    }

    /// The best `beam`, best first.
    fn best(mut self) -> &'a [Candidate] {
        self.cut();
        self.items.sort_by(|a, b| b.score.total_cmp(&a.score));
        self.items
    }
}

/// Runs beam search for one batch of requests (`configs[r]` is request
/// `r`'s) against `index`: one model call per step for every live hypothesis.
pub fn beam_search(
    index: &Index,
    model: &mut dyn StepModel,
    configs: &[BeamConfig],
) -> Result<Search, ModelError> {
    let sid_tokens = model.sid_tokens().min(usize::from(TokenId::MAX) + 1);
    let (vocab, eos) = (sid_tokens + 1, sid_tokens);
    if index.used_token_limit() as usize > sid_tokens {
        return Err(format!(
            "the index uses SID token ids below {} but the model scores {sid_tokens}",
            index.used_token_limit()
        )
        .into());
    }
    if index.max_sid_len() > MAX_SID_LEN {
        return Err(format!(
            "the index holds SIDs of {} tokens; beam search builds at most {MAX_SID_LEN}",
            index.max_sid_len()
        )
        .into());
    }
    let max_len = |c: &BeamConfig| {
        if c.constrained {
            index.max_sid_len()
        } else {
            c.max_len.min(MAX_SID_LEN)
        }
    };
    let steps_bound = configs.iter().map(max_len).max().unwrap_or(0);
    let mut live: Vec<Hyp> = (0..configs.len())
        .map(|r| Hyp {
            request: r,
            parent: None,
            tokens: SidBuf::default(),
            node: Some(index.root()),
            score: 0.0,
        })
        .collect();
    let mut finished: Vec<Vec<Generated>> = vec![Vec::new(); configs.len()];
    let mut scores = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut search = Search::default();
    let (mut nodes, mut kids) = (Vec::new(), Vec::new());
    for _step in 0..=steps_bound {
        if live.is_empty() {
            break;
        }
        let rows: Vec<Row> = live
            .iter()
            .map(|h| Row {
                request: h.request,
                parent: h.parent,
                sid: h.tokens.as_slice(),
            })
            .collect();
        let model_start = Instant::now();
        model.log_probs(&rows, &mut scores)?;
        let search_start = Instant::now();
        search.model_time += search_start - model_start;
        search.steps += 1;
        if scores.len() < rows.len() * vocab {
            return Err(format!(
                "the model returned {} scores for {} rows of {vocab}",
                scores.len(),
                rows.len()
            )
            .into());
        }
        // The index's share of the step: the children of every live
        // hypothesis's node (tracked unconstrained too, to tell valid SIDs),
        // in one batch whose memory loads overlap.
        nodes.clear();
        nodes.extend(live.iter().map(|h| h.node.unwrap_or(NodeId::MAX)));
        index.children_of_all(&nodes, &mut kids);
        let mut next_live = Vec::with_capacity(live.len());
        // Live hypotheses are grouped by request, in request order.
        let mut first = 0;
        while first < live.len() {
            let r = live[first].request;
            let end = first + live[first..].iter().take_while(|h| h.request == r).count();
            let cfg = &configs[r];
            let beam = cfg.beam.max(1);
            let at_max_len = max_len(cfg);
            let mut pool = Pool::new(&mut candidates, beam);
            for (i, h) in live.iter().enumerate().take(end).skip(first) {
                let row = &scores[i * vocab..(i + 1) * vocab];
                // Log-probabilities are ≤ 0: no continuation of a hypothesis
                // already at or below the floor can enter the beam.
                if h.score <= pool.floor {
                    continue;
                }
                let extend = h.tokens.len() < at_max_len;
                match h.node.filter(|_| cfg.constrained) {
                    Some(node) => {
                        if extend {
                            // Only the allowed slice is read.
                            for &t in kids[i].tokens() {
                                pool.offer(i, Some(t), h.score + row[usize::from(t)]);
                            }
                        }
                        if index.is_terminal(node) {
                            pool.offer(i, None, h.score + row[eos]);
                        }
                    }
                    None => {
                        if extend {
                            let sid_row = &row[..sid_tokens];
                            for (t, &lp) in sid_row.iter().enumerate() {
                                pool.offer(i, Some(t as TokenId), h.score + lp);
                            }
                        }
                        if !h.tokens.is_empty() {
                            pool.offer(i, None, h.score + row[eos]);
                        }
                    }
                }
            }
            // The best `beam` continuations of this request; its live ones
            // go to the tail of `next_live`.
            let candidates = pool.best();
            let tail = next_live.len();
            let done = &mut finished[r];
            for c in candidates.iter() {
                let h = &live[c.hyp];
                match c.token {
                    None => done.push(Generated {
                        sid: h.tokens.as_slice().to_vec(),
                        score: c.score,
                        node: h.node.filter(|&n| index.is_terminal(n)),
                    }),
                    Some(t) => {
                        let tokens = h.tokens.with(t);
                        next_live.push(Hyp {
                            request: r,
                            parent: Some(c.hyp),
                            tokens,
                            // None past a node id the trie lacks (NodeId::MAX).
                            node: kids[c.hyp].child(t),
                            score: c.score,
                        });
                    }
                }
            }
            // Done once the k-th best finished SID beats every live one
            // (log-probabilities only lower a score).
            let top_k = cfg.top_k.max(1);
            if done.len() >= top_k {
                done.sort_by(|a, b| b.score.total_cmp(&a.score));
                let kth = done[top_k - 1].score;
                let mut kept = tail;
                for j in tail..next_live.len() {
                    if next_live[j].score > kth {
                        next_live.swap(kept, j);
                        kept += 1;
                    }
                }
                next_live.truncate(kept);
            }
            first = end;
        }
        live = next_live;
        search.search_time += search_start.elapsed();
    }
    search.results = finished
        .into_iter()
        .zip(configs)
        .map(|(mut f, cfg)| {
            f.sort_by(|a, b| b.score.total_cmp(&a.score));
            f.truncate(cfg.top_k.max(1));
            let invalid = f.iter().filter(|g| g.node.is_none()).count();
            BeamResult { sids: f, invalid }
        })
        .collect();
    Ok(search)
}
