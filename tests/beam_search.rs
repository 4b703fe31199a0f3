//! Constrained beam search against exhaustive scoring, with a deterministic
//! random model behind the `StepModel` trait, over random variable-length tries.

mod common;

use common::{SIZES, sid_strategy};
use std::collections::BTreeSet;

use proptest::prelude::*;
use sidx::generate::{BeamConfig, ModelError, Row, StepModel, beam_search};
use sidx::index::{Index, IndexStore, TokenId, build_from_table};
use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable, Token};

/// Log-softmax of pseudo-random logits that depend on (seed, request, prefix, token).
struct HashModel {
    seed: u64,
    vocab: usize,
}

impl HashModel {
    fn row(&self, request: usize, prefix: &[TokenId]) -> Vec<f32> {
        let mut h = self.seed ^ (request as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for &t in prefix {
            h = (h ^ t as u64).wrapping_mul(0x100_0000_01B3);
        }
        let logits: Vec<f32> = (0..self.vocab)
            .map(|t| {
                let x = (h ^ (t as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
                    .wrapping_mul(0x94D0_49BB_1331_11EB);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 6.0
            })
            .collect();
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
        logits.iter().map(|l| l - lse).collect()
    }
}

impl StepModel for HashModel {
    fn vocab(&self) -> usize {
        self.vocab
    }
    fn eos(&self) -> usize {
        self.vocab - 1
    }
    fn sid_tokens(&self) -> usize {
        self.vocab - 1
    }
    fn log_probs(&mut self, rows: &[Row<'_>], out: &mut Vec<f32>) -> Result<(), ModelError> {
        out.clear();
        for row in rows {
            out.extend(self.row(row.request, row.sid));
        }
        Ok(())
    }
}

fn build(sids: &[Vec<Token>], dir: &std::path::Path) -> Index {
    let layout = Layout::new(SIZES.to_vec()).unwrap();
    let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
    for (i, s) in sids.iter().enumerate() {
        t.push(format!("i{i}"), s);
    }
    let store = IndexStore::new(dir);
    build_from_table(&store, &t, "test", None).unwrap();
    store.open_current().unwrap()
}

/// Every SID in the index, scored by the model token by token plus end-of-SID.
fn exhaustive(index: &Index, model: &HashModel, request: usize) -> Vec<(Vec<TokenId>, f32)> {
    let sids: BTreeSet<Vec<TokenId>> = index.entries().map(|(s, _)| s).collect();
    let mut scored: Vec<(Vec<TokenId>, f32)> = sids
        .into_iter()
        .map(|s| {
            let mut score = 0.0;
            for k in 0..s.len() {
                score += model.row(request, &s[..k])[s[k] as usize];
            }
            score += model.row(request, &s)[model.eos()];
            (s, score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored
}

const VOCAB: usize = 4 + 3 + 5 + 2 + 1; // quantizer tokens, 2 disambiguation codes, end-of-SID

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn wide_constrained_beam_equals_exhaustive_scoring(
        sids in prop::collection::vec(sid_strategy(2), 1..40),
        seed in any::<u64>(),
        top_k in 1..6usize,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let index = build(&sids, dir.path());
        let mut model = HashModel { seed, vocab: VOCAB };
        // Wide enough that nothing is ever pruned: every node plus every ending.
        let beam = 2 * index.manifest().nodes as usize;
        let cfg = BeamConfig { beam, top_k, constrained: true, max_len: 8 };
        let results = beam_search(&index, &mut model, &[cfg, cfg]).unwrap().results;
        for (r, res) in results.iter().enumerate() {
            let want = exhaustive(&index, &model, r);
            let n = top_k.min(want.len());
            prop_assert_eq!(res.sids.len(), n);
            for (got, (_, score)) in res.sids.iter().zip(&want) {
                prop_assert!((got.score - score).abs() < 1e-4, "score {} vs {}", got.score, score);
                // Equal scores may come in either order; the SID must score the same.
                let rescored = want.iter().find(|(s, _)| *s == got.sid).map(|(_, sc)| *sc);
                prop_assert!(rescored.is_some_and(|sc| (sc - got.score).abs() < 1e-4));
            }
            prop_assert_eq!(res.invalid, 0);
        }
    }

    #[test]
    fn constrained_results_are_always_valid_sids(
        sids in prop::collection::vec(sid_strategy(2), 1..40),
        seed in any::<u64>(),
        beam in 1..6usize,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let index = build(&sids, dir.path());
        let mut model = HashModel { seed, vocab: VOCAB };
        let cfg = BeamConfig { beam, top_k: beam, constrained: true, max_len: 8 };
        for res in beam_search(&index, &mut model, &[cfg; 3]).unwrap().results {
            prop_assert!(!res.sids.is_empty());
            for g in &res.sids {
                prop_assert!(g.node.is_some());
                prop_assert!(index.items(&g.sid).len() > 0, "returned SID {:?} has no item", g.sid);
            }
        }
        // Unconstrained decoding reports exactly the SIDs no item has.
        let cfg = BeamConfig { beam, top_k: beam, constrained: false, max_len: 4 };
        for res in beam_search(&index, &mut model, &[cfg; 3]).unwrap().results {
            let invalid = res.sids.iter().filter(|g| index.items(&g.sid).len() == 0).count();
            prop_assert_eq!(res.invalid, invalid);
        }
    }
}
