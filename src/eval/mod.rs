//! Offline evaluation of a generator against held-out interactions
//! (leave-one-out): Recall@K and NDCG@K, the paper's head/tail split by the
//! target's layer-2 token (Table 1), and the share of invalid SIDs returned
//! by unconstrained decoding against k (Figure 5).

mod report;

pub use report::{EvalReport, GroupMetrics, render_svg};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::generate::{GenerateError, GenerationRequest, GenerationResponse, Generator, History};
use crate::index::Index;

/// The cut-offs reported.
pub const KS: [usize; 5] = [1, 5, 10, 20, 50];

/// Recall@k and NDCG@k of one ranked list with one relevant item at 0-based
/// `rank` (`None` = not retrieved): 1 and 1/log2(rank + 2) when rank < k.
pub fn hit_metrics(rank: Option<usize>, k: usize) -> (f64, f64) {
    match rank {
        Some(r) if r < k => (1.0, 1.0 / ((r + 2) as f64).log2()),
        _ => (0.0, 0.0),
    }
}

/// 0-based rank of `target` among the distinct item ids of a response, in order.
pub fn rank_of(response: &GenerationResponse, target: &str) -> Option<usize> {
    let mut seen = std::collections::HashSet::new();
    response
        .items
        .iter()
        .filter(|i| !i.item_id.is_empty() && seen.insert(i.item_id.as_str()))
        .position(|i| i.item_id == target)
}

/// For each k in [`KS`]: (invalid SIDs, SIDs) among the first k distinct SIDs.
pub fn invalid_at_k(response: &GenerationResponse) -> [(usize, usize); KS.len()] {
    let mut sids: Vec<(&[u16], bool)> = Vec::new();
    for it in &response.items {
        if sids.last().is_none_or(|(s, _)| *s != it.sid.as_slice()) {
            sids.push((&it.sid, it.item_id.is_empty()));
        }
    }
    KS.map(|k| {
        let top = &sids[..k.min(sids.len())];
        (top.iter().filter(|(_, bad)| *bad).count(), top.len())
    })
}

/// One user's held-out case: history → target.
#[derive(Clone, Debug)]
pub struct Case {
    pub history: Vec<String>,
    pub target: String,
}

/// Reads `user item item …` lines; the last item of each user is the
/// target, the ones before it the history (leave-one-out).
pub fn leave_one_out(path: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let items: Vec<&str> = line.split_whitespace().skip(1).collect();
            (items.len() >= 2).then(|| Case {
                history: items[..items.len() - 1]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                target: items[items.len() - 1].to_string(),
            })
        })
        .collect())
}

/// Which group a target falls in: the head or tail of the layer-2 codes, or
/// no layer-2 token at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Head,
    Tail,
    NoLayer2,
}

/// Groups items by the layer-2 code of their SID in `reference` (the original
/// RQ SIDs, so every variant is split the same way).
pub fn groups(reference: &crate::sid::SidTable, head_share: f64) -> HashMap<String, Group> {
    let counts = reference.layer_counts();
    let items = reference.len() as u64;
    let split = crate::hourglass::head_tail(&counts[1], items, head_share);
    let head: std::collections::HashSet<u32> = split.head.iter().map(|c| c.code).collect();
    reference
        .iter()
        .map(|(id, sid)| {
            let g = match sid.iter().find(|t| t.layer == 2) {
                Some(t) if head.contains(&t.code) => Group::Head,
                Some(_) => Group::Tail,
                None => Group::NoLayer2,
            };
            (id.to_string(), g)
        })
        .collect()
}

/// How to run the evaluation.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    pub beam: usize,
    /// Also decode unconstrained (recall and the invalid ratio).
    pub unconstrained: bool,
}

/// Runs every case through `generator` against `index`, constrained (and
/// unconstrained), a queue's worth of requests at a time; `progress` gets the
/// number of requests answered so far.
pub fn evaluate(
    generator: &Generator,
    index: &Arc<Index>,
    cases: &[Case],
    groups: &HashMap<String, Group>,
    cfg: &EvalConfig,
    progress: &dyn Fn(usize),
) -> Result<EvalReport, GenerateError> {
    let mut report = EvalReport::new(cfg.beam);
    let usable: Vec<&Case> = cases
        .iter()
        .filter(|c| {
            index.sid(&c.target).is_some() && c.history.iter().all(|h| index.sid(h).is_some())
        })
        .collect();
    report.skipped_users = cases.len() - usable.len();
    let in_flight = generator.limits().queue.max(1);
    let modes: &[bool] = if cfg.unconstrained {
        &[true, false]
    } else {
        &[true]
    };
    let mut done = 0;
    for &constrained in modes {
        for chunk in usable.chunks(in_flight) {
            let (tx, rx) = std::sync::mpsc::channel();
            for (i, case) in chunk.iter().enumerate() {
                let tx = tx.clone();
                let req = GenerationRequest {
                    history: History::Items(case.history.clone()),
                    beam: Some(cfg.beam),
                    top_k: Some(cfg.beam),
                    constrained,
                    deadline: None,
                };
                generator.submit(Arc::clone(index), req, move |r| {
                    let _ = tx.send((i, r));
                })?;
            }
            drop(tx);
            let mut answers: Vec<(usize, Result<GenerationResponse, GenerateError>)> =
                rx.iter().collect();
            answers.sort_by_key(|(i, _)| *i);
            for (i, r) in answers {
                let r = r?;
                let case = chunk[i];
                let rank = rank_of(&r, &case.target);
                let group = groups.get(&case.target).copied().unwrap_or(Group::NoLayer2);
                if constrained {
                    report.constrained.add(rank);
                    report.group_mut(group).add(rank);
                } else {
                    report.unconstrained.add(rank);
                    for (j, (bad, n)) in invalid_at_k(&r).into_iter().enumerate() {
                        report.invalid_counts[j].0 += bad;
                        report.invalid_counts[j].1 += n;
                    }
                }
            }
            done += chunk.len();
            progress(done);
        }
    }
    report.finish();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::ResultItem;

    fn response(items: &[(&str, &[u16])]) -> GenerationResponse {
        GenerationResponse {
            items: items
                .iter()
                .map(|(id, sid)| ResultItem {
                    item_id: id.to_string(),
                    sid: sid.to_vec(),
                    score: 0.0,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn hit_metrics_by_hand() {
        assert_eq!(hit_metrics(Some(0), 1), (1.0, 1.0));
        assert_eq!(hit_metrics(Some(1), 1), (0.0, 0.0));
        // Rank 2 (third place): 1 / log2(4) = 0.5.
        assert_eq!(hit_metrics(Some(2), 5), (1.0, 0.5));
        assert_eq!(hit_metrics(Some(5), 5), (0.0, 0.0));
        assert_eq!(hit_metrics(None, 50), (0.0, 0.0));
    }

    #[test]
    fn ranks_count_distinct_items_and_skip_invalid_sids() {
        // SID [1] shared by a and b; an invalid SID; then c.
        let r = response(&[
            ("a", &[1]),
            ("b", &[1]),
            ("", &[7]),
            ("c", &[2]),
            ("a", &[1]),
        ]);
        assert_eq!(rank_of(&r, "a"), Some(0));
        assert_eq!(rank_of(&r, "b"), Some(1));
        assert_eq!(rank_of(&r, "c"), Some(2));
        assert_eq!(rank_of(&r, "z"), None);
        // Distinct SIDs: [1] valid, [7] invalid, [2] valid, [1] again after [2].
        let at = invalid_at_k(&r);
        assert_eq!(at[0], (0, 1)); // k = 1
        assert_eq!(at[1], (1, 4)); // k = 5: all four SID runs
    }

    #[test]
    fn aggregate_metrics_by_hand() {
        let mut g = GroupMetrics::default();
        for rank in [Some(0), Some(2), None, Some(9)] {
            g.add(rank);
        }
        let mut r = EvalReport::new(10);
        r.constrained = g;
        r.invalid_counts = [(1, 4), (2, 8), (0, 0), (3, 12), (5, 20)];
        r.finish();
        let c = &r.constrained;
        assert_eq!(c.users, 4);
        assert_eq!(c.recall, [0.25, 0.5, 0.75, 0.75, 0.75]);
        let ndcg10 = (1.0 + 0.5 + 1.0 / 11f64.log2()) / 4.0;
        assert!((c.ndcg[2] - ndcg10).abs() < 1e-12);
        assert!((c.ndcg[1] - 1.5 / 4.0).abs() < 1e-12);
        assert_eq!(r.invalid_ratio, [0.25, 0.25, 0.0, 0.25, 0.25]);
        assert!(render_svg(&r).starts_with("<svg"));
        assert!(r.table().contains("constrained"));
    }

    #[test]
    fn leave_one_out_splits_the_last_item() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seq.txt");
        std::fs::write(&p, "0 a b c\n1 d\n2 e f\n").unwrap();
        let cases = leave_one_out(&p).unwrap();
        assert_eq!(cases.len(), 2, "a user with one item has no history");
        assert_eq!(cases[0].history, ["a", "b"]);
        assert_eq!(cases[0].target, "c");
        assert_eq!(
            (cases[1].history.as_slice(), cases[1].target.as_str()),
            (&["e".to_string()][..], "f")
        );
        assert!(
            leave_one_out(&dir.path().join("missing.txt"))
                .unwrap_err()
                .contains("missing.txt")
        );
    }
}
