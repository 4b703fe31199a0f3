//! The committed fixture generator (trained by python/train_generator.py on
//! the amazon_scientific SIDs in tests/fixtures/generator/) on real ONNX
//! Runtime: contract detection, KV-cache vs no-cache exports, exactness
//! against exhaustive scoring, and start-up errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sidx::generate::{
    BeamConfig, GenerateError, GenerationRequest, Generator, GeneratorLimits, History, OnnxModel,
    Row, RuntimeOptions, StepModel, beam_search,
};
use sidx::index::{Index, IndexStore, TokenId, build_from_table};
use sidx::sid::{SidHeader, SidTable};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/generator")
        .join(name)
}

fn model(name: &str) -> OnnxModel {
    OnnxModel::open(&fixture(name), None, &RuntimeOptions::default()).unwrap()
}

/// The fixture's SIDs (all, or the first `limit` items) as a served index.
fn index(dir: &Path, limit: usize) -> Index {
    let table = SidTable::read(&fixture("sids.tsv")).unwrap();
    let mut sub = SidTable::new(table.header().clone());
    for (id, sid) in table.iter().take(limit) {
        sub.push(id, sid);
    }
    let store = IndexStore::new(dir);
    build_from_table(&store, &sub, "fixture", None).unwrap();
    store.open_current().unwrap()
}

fn prompt(m: &OnnxModel, index: &Index, items: &[&str]) -> Vec<i64> {
    let sids: Vec<Vec<TokenId>> = items.iter().map(|i| index.sid(i).unwrap()).collect();
    m.sidecar()
        .prompt(sids.iter().map(Vec::as_slice), index.max_sid_len())
}

#[test]
fn contract_is_detected_from_the_graph() {
    let plain = model("model.onnx");
    let kv = model("model_kv.onnx");
    assert_eq!(plain.contract().cache_layers, 0);
    assert!(plain.contract().position_ids);
    assert_eq!(kv.contract().cache_layers, 2);
    assert_eq!((kv.contract().heads, kv.contract().head_dim), (4, 16));
    assert_eq!(kv.contract().vocab, Some(kv.sidecar().vocab_size as usize));
}

#[test]
fn kv_cache_and_plain_exports_give_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path(), usize::MAX);
    let mut plain = model("model.onnx");
    let mut kv = model("model_kv.onnx");
    // Prompts of different lengths in one batch exercise left padding.
    let histories: [&[&str]; 3] = [
        &["0", "1", "2", "3"],
        &["13"],
        &["9", "10", "11", "12", "6", "100", "7"],
    ];
    let prompts: Vec<Vec<i64>> = histories
        .iter()
        .map(|h| prompt(&plain, &index, h))
        .collect();
    for constrained in [true, false] {
        let cfg = BeamConfig {
            beam: 8,
            top_k: 5,
            constrained,
            max_len: 4,
        };
        let a = beam_search(&index, &mut plain.batch(prompts.clone()), &[cfg; 3]).unwrap();
        let b = beam_search(&index, &mut kv.batch(prompts.clone()), &[cfg; 3]).unwrap();
        for (x, y) in a.results.iter().zip(&b.results) {
            assert_eq!(x.sids.len(), 5);
            assert_eq!(x.invalid, y.invalid);
            for (g, h) in x.sids.iter().zip(&y.sids) {
                assert_eq!(g.sid, h.sid, "constrained={constrained}");
                assert!(
                    (g.score - h.score).abs() < 1e-3,
                    "{} vs {}",
                    g.score,
                    h.score
                );
            }
        }
    }
}

#[test]
fn wide_beam_equals_exhaustive_scoring_with_the_real_model() {
    let dir = tempfile::tempdir().unwrap();
    let index = index(dir.path(), 60);
    let mut kv = model("model_kv.onnx");
    let mut plain = model("model.onnx");
    let p = prompt(&plain, &index, &["3", "5", "8"]);
    // Every prefix of every SID, scored in one call of the no-cache model.
    let sids: Vec<Vec<TokenId>> = {
        let mut s: Vec<_> = index.entries().map(|(s, _)| s).collect();
        s.dedup();
        s
    };
    let mut prefixes: Vec<Vec<TokenId>> = sids
        .iter()
        .flat_map(|s| (0..=s.len()).map(|k| s[..k].to_vec()))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    let rows: Vec<Row> = prefixes
        .iter()
        .map(|s| Row {
            request: 0,
            parent: None,
            sid: s,
        })
        .collect();
    let mut batch = plain.batch(vec![p.clone()]);
    let mut lp = Vec::new();
    batch.log_probs(&rows, &mut lp).unwrap();
    // A score row: SID token t at t, end-of-SID last.
    let (v, eos) = (batch.sid_tokens() + 1, batch.sid_tokens());
    let at: HashMap<&[TokenId], &[f32]> = prefixes
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_slice(), &lp[i * v..(i + 1) * v]))
        .collect();
    let mut want: Vec<(Vec<TokenId>, f32)> = sids
        .iter()
        .map(|s| {
            let score = (0..s.len())
                .map(|k| at[&s[..k]][s[k] as usize])
                .sum::<f32>()
                + at[s.as_slice()][eos];
            (s.clone(), score)
        })
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let beam = 2 * index.manifest().nodes as usize;
    let cfg = BeamConfig {
        beam,
        top_k: 10,
        constrained: true,
        max_len: 4,
    };
    let got = beam_search(&index, &mut kv.batch(vec![p]), &[cfg]).unwrap();
    let got = &got.results[0];
    assert_eq!(got.sids.len(), 10);
    for (g, (sid, score)) in got.sids.iter().zip(&want) {
        assert_eq!(&g.sid, sid);
        assert!((g.score - score).abs() < 1e-3, "{} vs {score}", g.score);
    }
}

#[test]
fn unconstrained_decoding_reports_invalid_sids_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // A small catalog: most SIDs the model likes are not in it.
    let index = index(dir.path(), 200);
    let mut kv = model("model_kv.onnx");
    let p = prompt(&kv, &index, &["0", "1"]);
    let cfg = BeamConfig {
        beam: 20,
        top_k: 20,
        constrained: false,
        max_len: 4,
    };
    let res = &beam_search(&index, &mut kv.batch(vec![p.clone()]), &[cfg])
        .unwrap()
        .results[0];
    let invalid = res
        .sids
        .iter()
        .filter(|g| index.items(&g.sid).len() == 0)
        .count();
    assert_eq!(res.invalid, invalid);
    assert!(
        invalid > 0,
        "a 200-item catalog should miss some unconstrained SIDs"
    );
    let cfg = BeamConfig {
        constrained: true,
        ..cfg
    };
    let res = &beam_search(&index, &mut kv.batch(vec![p]), &[cfg])
        .unwrap()
        .results[0];
    assert_eq!(res.invalid, 0);
    assert!(res.sids.iter().all(|g| index.items(&g.sid).len() > 0));
}

#[test]
fn engine_answers_batched_requests_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(index(dir.path(), usize::MAX));
    let generator =
        Generator::start(model("model_kv.onnx"), &index, GeneratorLimits::default()).unwrap();
    let req = |history: History| GenerationRequest {
        history,
        beam: Some(10),
        top_k: Some(5),
        constrained: true,
        deadline: None,
    };
    let items = |ids: &[&str]| History::Items(ids.iter().map(|s| s.to_string()).collect());
    // Several requests at once share batches; each gets its own answer.
    let (tx, rx) = std::sync::mpsc::channel();
    for h in [&["0", "1"][..], &["13"], &["2", "3", "4"]] {
        let tx = tx.clone();
        let key = h.join(",");
        generator
            .submit(Arc::clone(&index), req(items(h)), move |r| {
                tx.send((key, r)).unwrap()
            })
            .unwrap();
    }
    drop(tx);
    let answers: HashMap<String, _> = rx.iter().collect();
    assert_eq!(answers.len(), 3);
    for r in answers.values() {
        let r = r.as_ref().unwrap();
        assert!(r.items.len() >= 5, "top-5 SIDs give at least 5 items");
        assert_eq!(r.invalid_sids, 0);
        assert!(r.items.windows(2).all(|w| w[0].score >= w[1].score));
        for it in &r.items {
            assert_eq!(index.sid(&it.item_id).as_deref(), Some(it.sid.as_slice()));
        }
    }
    let single = generator
        .generate(Arc::clone(&index), req(items(&["13"])))
        .unwrap();
    let batched = answers["13"].as_ref().unwrap();
    assert_eq!(
        single.items.iter().map(|i| &i.item_id).collect::<Vec<_>>(),
        batched.items.iter().map(|i| &i.item_id).collect::<Vec<_>>()
    );
    // Raw token ids: the same prompt as item "13" gives the same items.
    let tokens: Vec<u32> = prompt(&model("model.onnx"), &index, &["13"])
        .iter()
        .map(|&t| t as u32)
        .collect();
    let raw = generator
        .generate(Arc::clone(&index), req(History::Tokens(tokens)))
        .unwrap();
    assert_eq!(raw.items, single.items);

    let refused =
        |r: GenerationRequest, field: &str| match generator.generate(Arc::clone(&index), r) {
            Err(GenerateError::InvalidArgument(e)) => assert_eq!(e.field(), field),
            other => panic!("expected INVALID_ARGUMENT on {field}, got {other:?}"),
        };
    refused(req(items(&["0", "no-such-item"])), "history_item_ids");
    refused(req(items(&[])), "history_item_ids");
    refused(req(History::Tokens(vec![])), "history_token_ids");
    refused(req(History::Tokens(vec![1, 999_999])), "history_token_ids");
    let sized = |beam: usize, top_k: usize| GenerationRequest {
        beam: Some(beam),
        top_k: Some(top_k),
        ..req(items(&["0"]))
    };
    refused(sized(100_000, 5), "beam_width");
    refused(sized(0, 1), "beam_width");
    refused(sized(4, 5), "top_k");
    refused(sized(4, 0), "top_k");
    let late = GenerationRequest {
        deadline: Some(std::time::Instant::now()),
        ..req(items(&["0"]))
    };
    assert!(matches!(
        generator.generate(Arc::clone(&index), late),
        Err(GenerateError::DeadlineExceeded(_))
    ));
}

#[test]
fn start_up_errors_name_the_problem() {
    let opts = RuntimeOptions::default();
    let err = |r: Result<OnnxModel, GenerateError>| r.err().expect("must fail").to_string();
    let e = err(OnnxModel::open(
        &fixture("bad_contract.onnx"),
        Some(&fixture("generator.json")),
        &opts,
    ));
    assert!(
        e.contains("bad_contract.onnx")
            && e.contains("input tokens is not part of the decoder contract"),
        "{e}"
    );
    let e = err(OnnxModel::open(
        &fixture("missing.onnx"),
        Some(&fixture("generator.json")),
        &opts,
    ));
    assert!(
        e.contains("missing.onnx") && e.contains("no such file"),
        "{e}"
    );
    let e = err(OnnxModel::open(
        &fixture("model.onnx"),
        Some(&fixture("sids.tsv")),
        &opts,
    ));
    assert!(e.contains("sidecar") && e.contains("sids.tsv"), "{e}");
    // A sidecar that disagrees with the model's vocabulary.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("generator.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["vocab_size"] = serde_json::json!(json["vocab_size"].as_u64().unwrap() + 7);
    let bad = dir.path().join("generator.json");
    std::fs::write(&bad, json.to_string()).unwrap();
    let e = err(OnnxModel::open(&fixture("model.onnx"), Some(&bad), &opts));
    assert!(e.contains("vocab_size") && e.contains("logits"), "{e}");
    // An index with another layout than the model was trained on.
    let table = SidTable::read(&fixture("sids.tsv")).unwrap();
    let layout = sidx::sid::Layout::new(vec![16, 16, 16]).unwrap();
    let mut other = SidTable::new(SidHeader::new(&layout, table.header().collisions));
    other.push(
        "a",
        &[sidx::sid::Token::new(1, 1), sidx::sid::Token::new(2, 2)],
    );
    let store = IndexStore::new(&dir.path().join("idx"));
    build_from_table(&store, &other, "other", None).unwrap();
    let e = match Generator::start(
        model("model.onnx"),
        &store.open_current().unwrap(),
        GeneratorLimits::default(),
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a layout mismatch must fail at start-up"),
    };
    assert!(e.contains("codebook sizes"), "{e}");
    // A CUDA device on a machine without the CUDA provider fails clearly.
    if std::env::var_os("SIDX_EXPECT_CUDA").is_none() {
        let cuda = RuntimeOptions {
            device: "cuda:0".parse().unwrap(),
            ..RuntimeOptions::default()
        };
        let e = err(OnnxModel::open(&fixture("model.onnx"), None, &cuda));
        assert!(
            e.contains("CUDA execution provider") && e.contains("--allow-cpu-fallback"),
            "{e}"
        );
        let fallback = RuntimeOptions {
            allow_cpu_fallback: true,
            ..cuda
        };
        let m = OnnxModel::open(&fixture("model.onnx"), None, &fallback).unwrap();
        assert_eq!(m.device(), sidx::generate::Device::Cpu);
    }
}
