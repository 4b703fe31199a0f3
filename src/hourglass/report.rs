//! The hourglass report of a SID table: per-layer concentration, the shape of
//! the code tree, collisions, and the head/tail split of layer-2 tokens.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::stats::LayerStats;
use crate::sid::{CollisionStats, MitigationRule, SidTable, Token};

/// Default share of layer-2 items that the head tokens must hold.
pub const DEFAULT_HEAD_SHARE: f64 = 0.5;

/// The whole report (`hourglass.json`). Keys are stable; see the README.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HourglassReport {
    pub items: usize,
    pub codebook_sizes: Vec<u32>,
    pub collisions: CollisionStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigation: Option<MitigationSummary>,
    /// SID length (tokens, disambiguation included) → number of items.
    pub sid_lengths: Vec<LengthCount>,
    /// One entry per quantizer layer `1..=L`.
    pub layers: Vec<LayerStats>,
    pub paths: PathStats,
    /// Absent when the layout has fewer than two layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer2_head_tail: Option<HeadTail>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LengthCount {
    pub length: usize,
    pub items: usize,
}

/// The mitigation recorded in the SID file header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MitigationSummary {
    pub strategy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    pub dropped_layer2_codes: usize,
}

/// The code tree, depth by depth (depth `d` = the first `d` quantizer tokens
/// of a SID, disambiguation tokens excluded). Arrays are indexed by depth − 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathStats {
    pub depth: Vec<usize>,
    /// Distinct prefixes of `d` tokens.
    pub distinct_prefixes: Vec<u64>,
    /// `M_1 · … · M_d`: prefixes a fixed-length tree could hold.
    pub possible_prefixes: Vec<f64>,
    /// `distinct_prefixes / possible_prefixes`.
    pub path_sparsity: Vec<f64>,
    /// Children per prefix of depth `d − 1` that has any (the root for `d = 1`).
    pub mean_fanout: Vec<f64>,
    pub max_fanout: Vec<u64>,
}

/// Layer-2 tokens split as in the paper's Table 1: the most frequent tokens
/// that together hold `head_share` of the layer's items are the head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadTail {
    pub head_share: f64,
    pub head_tokens: usize,
    pub tail_tokens: usize,
    /// `head_tokens / used layer-2 codes`.
    pub head_token_fraction: f64,
    pub head_items: u64,
    pub tail_items: u64,
    /// Items without a layer-2 token (dropped by a mitigation).
    pub items_without_layer2: u64,
    /// Head codes with their item counts, most frequent first.
    pub head: Vec<CodeCount>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeCount {
    pub code: u32,
    pub items: u64,
}

impl HourglassReport {
    /// Measures `table`; `head_share` sets the layer-2 head/tail split.
    pub fn measure(table: &SidTable, head_share: f64) -> Self {
        let layout = table.layout();
        let counts = table.layer_counts();
        let layers = counts
            .iter()
            .zip(layout.codebook_sizes())
            .enumerate()
            .map(|(l, (c, &m))| LayerStats::from_counts(l as u8 + 1, m, c))
            .collect();
        let mut lengths: HashMap<usize, usize> = HashMap::new();
        for (_, sid) in table.iter() {
            *lengths.entry(sid.len()).or_default() += 1;
        }
        let mut sid_lengths: Vec<LengthCount> = lengths
            .into_iter()
            .map(|(length, items)| LengthCount { length, items })
            .collect();
        sid_lengths.sort_by_key(|l| l.length);
        let mitigation = table.header().mitigation.as_ref().map(summarize);
        Self {
            items: table.len(),
            codebook_sizes: layout.codebook_sizes().to_vec(),
            collisions: CollisionStats::measure(table),
            mitigation,
            sid_lengths,
            layers,
            paths: path_stats(table),
            layer2_head_tail: counts
                .get(1)
                .map(|c2| head_tail(c2, table.len() as u64, head_share)),
        }
    }

    /// A compact, aligned text table for terminals.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.collisions;
        let _ = writeln!(
            s,
            "items {}  layout {:?}  collisions ({}): {} SIDs shared by {} items, max {} per SID",
            self.items,
            self.codebook_sizes,
            c.mode,
            c.colliding_sids,
            c.colliding_items,
            c.max_items_per_sid
        );
        if let Some(m) = &self.mitigation {
            let _ = writeln!(
                s,
                "mitigation {}: {} layer-2 codes dropped",
                m.strategy, m.dropped_layer2_codes
            );
        }
        let _ = writeln!(
            s,
            "{:>5} {:>6} {:>8} {:>5} {:>6} {:>7} {:>6} {:>6} {:>9} {:>6} {:>7}",
            "layer",
            "M",
            "items",
            "used",
            "util",
            "H bits",
            "H/max",
            "gini",
            "std",
            "top1",
            "top1%"
        );
        for l in &self.layers {
            let _ = writeln!(
                s,
                "{:>5} {:>6} {:>8} {:>5} {:>6.3} {:>7.3} {:>6.3} {:>6.3} {:>9.2} {:>6.3} {:>7.3}",
                l.layer,
                l.codebook_size,
                l.items,
                l.used,
                l.utilization,
                l.entropy,
                l.normalized_entropy,
                l.gini,
                l.std,
                l.top1_share,
                l.top1pct_share
            );
        }
        let p = &self.paths;
        for i in 0..p.depth.len() {
            let _ = writeln!(
                s,
                "depth {}: {} prefixes of {:.3e} possible (sparsity {:.3e}), fan-out mean {:.2} max {}",
                p.depth[i],
                p.distinct_prefixes[i],
                p.possible_prefixes[i],
                p.path_sparsity[i],
                p.mean_fanout[i],
                p.max_fanout[i]
            );
        }
        if let Some(h) = &self.layer2_head_tail {
            let _ = writeln!(
                s,
                "layer-2 head: {} tokens ({:.1}% of used) hold {} items; tail: {} tokens hold {}; {} items without layer 2",
                h.head_tokens,
                100.0 * h.head_token_fraction,
                h.head_items,
                h.tail_tokens,
                h.tail_items,
                h.items_without_layer2
            );
        }
        s
    }
}

fn summarize(rule: &MitigationRule) -> MitigationSummary {
    MitigationSummary {
        strategy: rule.strategy.name().into(),
        k: rule.strategy.k(),
        p: rule.strategy.p(),
        dropped_layer2_codes: rule.dropped_layer2.len(),
    }
}

fn path_stats(table: &SidTable) -> PathStats {
    let layout = table.layout();
    let dis = layout.disambiguation_layer();
    let depth = layout.layers();
    let mut prefixes: Vec<HashSet<&[Token]>> = vec![HashSet::new(); depth];
    for (_, sid) in table.iter() {
        let q = sid.iter().take_while(|t| t.layer < dis).count();
        for d in 1..=q.min(depth) {
            prefixes[d - 1].insert(&sid[..d]);
        }
    }
    let mut out = PathStats {
        depth: (1..=depth).collect(),
        distinct_prefixes: Vec::new(),
        possible_prefixes: Vec::new(),
        path_sparsity: Vec::new(),
        mean_fanout: Vec::new(),
        max_fanout: Vec::new(),
    };
    let mut possible = 1.0;
    for (d, set) in prefixes.iter().enumerate() {
        possible *= layout.codebook_sizes()[d] as f64;
        let mut children: HashMap<&[Token], u64> = HashMap::new();
        for p in set {
            *children.entry(&p[..d]).or_default() += 1;
        }
        let parents = children.len().max(1) as f64;
        out.distinct_prefixes.push(set.len() as u64);
        out.possible_prefixes.push(possible);
        out.path_sparsity.push(set.len() as f64 / possible);
        out.mean_fanout.push(set.len() as f64 / parents);
        out.max_fanout
            .push(children.values().copied().max().unwrap_or(0));
    }
    out
}

/// The paper's Table-1 split of layer-2 codes: the most frequent codes that
/// together hold `head_share` of the layer's items are the head.
pub fn head_tail(counts: &[u64], items: u64, head_share: f64) -> HeadTail {
    let mut ranked: Vec<CodeCount> = counts
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n > 0)
        .map(|(code, &items)| CodeCount {
            code: code as u32,
            items,
        })
        .collect();
    ranked.sort_by(|a, b| b.items.cmp(&a.items).then(a.code.cmp(&b.code)));
    let with_layer2: u64 = ranked.iter().map(|c| c.items).sum();
    let target = head_share * with_layer2 as f64;
    let mut head_items = 0;
    let mut head_tokens = 0;
    for c in &ranked {
        if head_items as f64 >= target {
            break;
        }
        head_items += c.items;
        head_tokens += 1;
    }
    let used = ranked.len();
    ranked.truncate(head_tokens);
    HeadTail {
        head_share,
        head_tokens,
        tail_tokens: used - head_tokens,
        head_token_fraction: if used == 0 {
            0.0
        } else {
            head_tokens as f64 / used as f64
        },
        head_items,
        tail_items: with_layer2 - head_items,
        items_without_layer2: items - with_layer2,
        head: ranked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sid::{CollisionMode, Layout, SidHeader};

    fn table(rows: &[&[(u8, u32)]]) -> SidTable {
        let layout = Layout::new(vec![2, 3, 2]).unwrap();
        let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
        for (i, sid) in rows.iter().enumerate() {
            let sid: Vec<Token> = sid.iter().map(|&(l, c)| Token::new(l, c)).collect();
            t.push(i.to_string(), &sid);
        }
        t
    }

    #[test]
    fn path_sparsity_worked_example() {
        // Layout 2 × 3 × 2 = 12 full paths. Items: (0,0,0) (0,0,1) (0,1,0) (1,2,1) (1,2,1).
        let t = table(&[
            &[(1, 0), (2, 0), (3, 0)],
            &[(1, 0), (2, 0), (3, 1)],
            &[(1, 0), (2, 1), (3, 0)],
            &[(1, 1), (2, 2), (3, 1)],
            &[(1, 1), (2, 2), (3, 1)],
        ]);
        let r = HourglassReport::measure(&t, 0.5);
        assert_eq!(r.paths.distinct_prefixes, vec![2, 3, 4]);
        assert_eq!(r.paths.possible_prefixes, vec![2.0, 6.0, 12.0]);
        assert_eq!(r.paths.path_sparsity, vec![1.0, 0.5, 4.0 / 12.0]);
        // Depth 2: parent 0 has children {0,1}, parent 1 has {2} → mean 1.5, max 2.
        assert_eq!(r.paths.mean_fanout, vec![2.0, 1.5, 4.0 / 3.0]);
        assert_eq!(r.paths.max_fanout, vec![2, 2, 2]);
        assert_eq!(r.collisions.colliding_sids, 1);
        assert_eq!(r.collisions.colliding_items, 2);
        // Layer 2 counts: code0 2, code1 1, code2 2 → head (≥ 50% of 5) = codes 0 and 2.
        let h = r.layer2_head_tail.unwrap();
        assert_eq!(h.head_tokens, 2);
        assert_eq!((h.head_items, h.tail_items), (4, 1));
        assert_eq!(
            h.head.iter().map(|c| c.code).collect::<Vec<_>>(),
            vec![0, 2]
        );
    }

    #[test]
    fn variable_length_sids_count_only_present_layers() {
        let t = table(&[
            &[(1, 0), (3, 1)],
            &[(1, 0), (2, 1), (3, 1)],
            &[(1, 1), (3, 0)],
        ]);
        let r = HourglassReport::measure(&t, 0.5);
        assert_eq!(r.layers[1].items, 1, "only one item kept its layer-2 token");
        assert_eq!(r.layers[0].items, 3);
        assert_eq!(r.layer2_head_tail.unwrap().items_without_layer2, 2);
        // (1:0 3:1) and (1:0 2:1) differ at depth 2: layer-tagged tokens.
        assert_eq!(r.paths.distinct_prefixes[1], 3);
        assert_eq!(
            r.sid_lengths,
            vec![
                LengthCount {
                    length: 2,
                    items: 2
                },
                LengthCount {
                    length: 3,
                    items: 1
                }
            ]
        );
    }
}
