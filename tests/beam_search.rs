//! Constrained beam search against exhaustive scoring, with a deterministic
//! random model (`SyntheticScores`) behind the `StepModel` trait, over random variable-length tries.

mod common;

use common::{SIZES, sid_strategy};
use std::collections::BTreeSet;

use proptest::prelude::*;
use sidx::generate::synthetic::{Scores, SyntheticScores};
use sidx::generate::{BeamConfig, beam_search};
use sidx::index::{Index, IndexStore, TokenId, build_from_table};
use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable, Token};

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
fn exhaustive(index: &Index, model: &SyntheticScores, request: usize) -> Vec<(Vec<TokenId>, f32)> {
    let sids: BTreeSet<Vec<TokenId>> = index.entries().map(|(s, _)| s).collect();
    let mut scored: Vec<(Vec<TokenId>, f32)> = sids
        .into_iter()
        .map(|s| {
            let mut score = 0.0;
            for k in 0..s.len() {
                score += model.row(request, &s[..k])[s[k] as usize];
            }
            score += model.row(request, &s)[model.eos];
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
        let mut model = SyntheticScores::new(VOCAB, seed, Scores::Hashed);
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
        let mut model = SyntheticScores::new(VOCAB, seed, Scores::Hashed);
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

/// The engine runs any `BatchModel`: the synthetic one, with no ONNX
/// Runtime, answers as a direct search with the same model does, and the
/// model thread's health reaches subscribers.
#[test]
fn the_engine_runs_any_batch_model_and_publishes_its_health() {
    use sidx::generate::synthetic::SyntheticModel;
    use sidx::generate::{BatchModel, GenerationRequest, Generator, GeneratorLimits, History};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let sids: Vec<Vec<Token>> = (0..30u32)
        .map(|i| {
            (0..3)
                .map(|l| Token::new(l as u8 + 1, (i * (l as u32 + 7) + i / 5) % SIZES[l]))
                .collect()
        })
        .collect();
    let index = Arc::new(build(&sids, dir.path()));
    let make = || SyntheticModel::new(SIZES.to_vec(), index.used_token_limit(), 11);
    let generator = Generator::start(make(), &index, GeneratorLimits::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    generator
        .health()
        .subscribe(move |alive| s.lock().unwrap().push(alive));
    assert_eq!(*seen.lock().unwrap(), vec![true]);

    let history = vec!["i3".to_string(), "i7".to_string()];
    let got = generator
        .generate(
            Arc::clone(&index),
            GenerationRequest {
                history: History::Items(history.clone()),
                beam: Some(8),
                top_k: Some(5),
                constrained: true,
                deadline: None,
            },
        )
        .unwrap();
    let mut direct = make();
    let prompt = direct.sidecar().prompt(
        history
            .iter()
            .map(|id| index.sid(id).unwrap())
            .collect::<Vec<_>>()
            .iter()
            .map(Vec::as_slice),
        index.max_sid_len(),
    );
    let cfg = BeamConfig {
        beam: 8,
        top_k: 5,
        constrained: true,
        max_len: index.max_sid_len() + 1,
    };
    let want = beam_search(&index, &mut *direct.batch(vec![prompt]), &[cfg]).unwrap();
    let want_sids: Vec<_> = want.results[0].sids.iter().map(|g| g.sid.clone()).collect();
    let mut got_sids: Vec<_> = got.items.iter().map(|it| it.sid.clone()).collect();
    got_sids.dedup();
    assert_eq!(got_sids, want_sids);
    assert_eq!(got.sids, 5);
    drop(generator);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![true, false],
        "a stopped model thread is reported"
    );
}
