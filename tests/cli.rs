//! The `sidx` binary end to end: outputs on success, clear errors and no
//! partial output on bad input.

mod common;

use common::{fails_with, p, sidx};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sidx::npy;
use sidx::sid::SidTable;
use sidx::synth::{self, SynthConfig};

fn small_catalog(dir: &Path, items: usize) -> PathBuf {
    let cfg = SynthConfig {
        items,
        dim: 16,
        clusters: 40,
        ..SynthConfig::default()
    };
    let path = dir.join("emb.npy");
    npy::write(&path, &[items, cfg.dim], &synth::generate(&cfg)).unwrap();
    path
}

/// A small catalog and its item ids (`item-0` …) in `ids.txt`.
fn catalog_with_ids(dir: &Path, items: usize) -> (PathBuf, PathBuf) {
    let ids = dir.join("ids.txt");
    std::fs::write(&ids, synth::ids(items).join("\n")).unwrap();
    (small_catalog(dir, items), ids)
}

/// `sidx quantize` of `emb` (ids from `ids`) into 3 layers at `out`.
fn quantize_into(emb: &Path, ids: &Path, extra: &[&str], out: &Path) {
    let mut args = vec!["quantize", "--embeddings", p(emb), "--ids", p(ids)];
    args.extend(["--layers", "3", "--out", p(out)]);
    args.extend(extra);
    let o = sidx(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn quantize_hourglass_mitigate_encode() {
    let dir = tempfile::tempdir().unwrap();
    let (emb, ids) = catalog_with_ids(dir.path(), 3000);
    let out = dir.path().join("q");
    quantize_into(&emb, &ids, &["--codebook-size", "32"], &out);
    for f in [
        "sids.tsv",
        "codebooks.npy",
        "quantizer.json",
        "hourglass.json",
        "hourglass.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let table = SidTable::read(&out.join("sids.tsv")).unwrap();
    assert_eq!(table.len(), 3000);
    assert_eq!(table.id(7), "item-7");
    let cb = npy::read(&out.join("codebooks.npy")).unwrap();
    assert_eq!(cb.shape, vec![3, 32, 16]);

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("hourglass.json")).unwrap()).unwrap();
    assert_eq!(report["items"], 3000);
    for key in [
        "layer",
        "codebook_size",
        "used",
        "utilization",
        "entropy",
        "normalized_entropy",
        "gini",
        "std",
        "top1_share",
    ] {
        assert!(
            report["layers"][1].get(key).is_some(),
            "layers[].{key} missing"
        );
    }
    assert!(report["paths"]["distinct_prefixes"].is_array());
    assert!(report["paths"]["path_sparsity"].is_array());
    assert!(report["collisions"]["colliding_items"].is_number());
    let svg = std::fs::read_to_string(out.join("hourglass.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));

    let h = sidx(&[
        "hourglass",
        "--sids",
        p(&out.join("sids.tsv")),
        "--json",
        "--svg",
        p(&dir.path().join("h.svg")),
    ]);
    assert!(h.status.success());
    let again: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
    assert_eq!(
        again["layers"], report["layers"],
        "hourglass of the file = report of the run"
    );
    assert!(dir.path().join("h.svg").is_file());

    let mitigated = dir.path().join("top4.tsv");
    let m = sidx(&[
        "mitigate",
        "--sids",
        p(&out.join("sids.tsv")),
        "--out",
        p(&mitigated),
        "--strategy",
        "top-k",
        "--k",
        "4",
    ]);
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let stdout = String::from_utf8_lossy(&m.stdout);
    assert!(
        stdout.contains("before:") && stdout.contains("after top-k"),
        "{stdout}"
    );
    let t = SidTable::read(&mitigated).unwrap();
    assert_eq!(
        t.header().mitigation.as_ref().unwrap().dropped_layer2.len(),
        4
    );
    assert!(t.iter().any(|(_, s)| s.iter().all(|tok| tok.layer != 2)));

    let enc = dir.path().join("enc.tsv");
    let e = sidx(&[
        "encode",
        "--codebooks",
        p(&out.join("codebooks.npy")),
        "--embeddings",
        p(&emb),
        "--ids",
        p(&ids),
        "--out",
        p(&enc),
    ]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    assert_eq!(
        SidTable::read(&enc).unwrap(),
        table,
        "stored codebooks reproduce the SIDs"
    );
}

#[test]
fn bad_embeddings_are_refused_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let quantize = |emb: &Path, extra: &[&str]| {
        let mut args = vec![
            "quantize",
            "--embeddings",
            p(emb),
            "--codebook-size",
            "4",
            "--layers",
            "2",
            "--out",
            p(&out),
        ];
        args.extend_from_slice(extra);
        sidx(&args)
    };

    // float64 instead of float32.
    let f8 = dir.path().join("f8.npy");
    let mut bytes = Vec::new();
    npy::write_to(&mut bytes, &[2, 2], &[0.0; 4]).unwrap();
    let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
    bytes[at + 2] = b'8';
    bytes.extend_from_slice(&[0; 16]);
    std::fs::write(&f8, &bytes).unwrap();
    fails_with(&quantize(&f8, &[]), &["f8.npy", "not float32"]);

    // Rank 1.
    let r1 = dir.path().join("r1.npy");
    npy::write(&r1, &[8], &[0.0; 8]).unwrap();
    fails_with(&quantize(&r1, &[]), &["r1.npy", "rank-2"]);

    // NaN in row 3.
    let nan = dir.path().join("nan.npy");
    let mut x = vec![0.5f32; 10 * 2];
    x[3 * 2 + 1] = f32::NAN;
    npy::write(&nan, &[10, 2], &x).unwrap();
    fails_with(&quantize(&nan, &[]), &["nan.npy", "row 3"]);

    // Ids file with the wrong length, and with a duplicate.
    let good = dir.path().join("good.npy");
    npy::write(
        &good,
        &[10, 2],
        &(0..20).map(|v| v as f32).collect::<Vec<_>>(),
    )
    .unwrap();
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "a\nb\nc\n").unwrap();
    fails_with(
        &quantize(&good, &["--ids", p(&ids)]),
        &["ids.txt", "3 ids for 10"],
    );
    std::fs::write(&ids, "a\nb\nc\nd\ne\nf\ng\nh\ni\na\n").unwrap();
    fails_with(
        &quantize(&good, &["--ids", p(&ids)]),
        &["ids.txt", "line 10", "duplicate"],
    );

    // M > N.
    let o = sidx(&[
        "quantize",
        "--embeddings",
        p(&good),
        "--codebook-size",
        "64",
        "--out",
        p(&out),
    ]);
    fails_with(&o, &["--codebook-size 64", "10 vectors"]);

    // Truncated file.
    let mut t = std::fs::read(&good).unwrap();
    t.truncate(t.len() - 3);
    let trunc = dir.path().join("trunc.npy");
    std::fs::write(&trunc, t).unwrap();
    fails_with(&quantize(&trunc, &[]), &["trunc.npy", "truncated"]);

    assert!(!out.exists(), "no partial output directory after failures");
}

#[test]
fn dimension_mismatch_with_stored_codebooks() {
    let dir = tempfile::tempdir().unwrap();
    let emb = small_catalog(dir.path(), 500);
    let out = dir.path().join("q");
    assert!(
        sidx(&[
            "quantize",
            "--embeddings",
            p(&emb),
            "--codebook-size",
            "8",
            "--out",
            p(&out)
        ])
        .status
        .success()
    );
    let other = dir.path().join("d3.npy");
    npy::write(&other, &[4, 3], &[0.1; 12]).unwrap();
    let sids = dir.path().join("new.tsv");
    let o = sidx(&[
        "encode",
        "--codebooks",
        p(&out.join("codebooks.npy")),
        "--embeddings",
        p(&other),
        "--out",
        p(&sids),
    ]);
    fails_with(&o, &["d3.npy", "dimension 3", "have 16"]);
    assert!(!sids.exists());
}

#[test]
fn malformed_sid_files_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("a\t1:1 2:2\n\nb\t1:0\n", &[":2:", "empty line"]),
        ("a\t1:1 2:2\nb 1:0\n", &[":2:", "missing TAB"]),
        ("a\t1:1 x:2\n", &[":1:", "layer \"x\""]),
        ("a\t2:1 1:2\n", &[":1:", "layers must increase"]),
        (
            "a\t1:1\na\t1:2\n",
            &[":2:", "duplicate item id \"a\"", "line 1"],
        ),
        (
            "#sidx {\"format\":\"sidx-sids\",\"version\":1,\"codebook_sizes\":[4,4],\"collisions\":\"share\"}\na\t1:9\n",
            &[":2:", "out of range"],
        ),
        (
            "#sidx {\"format\":\"sidx-sids\",\"version\":9,\"codebook_sizes\":[4],\"collisions\":\"share\"}\n",
            &[":1:", "version 9"],
        ),
        ("", &["no items"]),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("case{i}.tsv"));
        std::fs::write(&f, text).unwrap();
        let o = sidx(&["hourglass", "--sids", p(&f)]);
        let mut all = vec![format!("case{i}.tsv")];
        all.extend(needles.iter().map(|s| s.to_string()));
        fails_with(&o, &all.iter().map(String::as_str).collect::<Vec<_>>());
        let m = sidx(&[
            "mitigate",
            "--sids",
            p(&f),
            "--out",
            p(&dir.path().join("m.tsv")),
            "--strategy",
            "drop-layer2",
        ]);
        assert!(!m.status.success());
    }
    assert!(!dir.path().join("m.tsv").exists());
}

/// A C-ordered `<i4` `.npy` of `rows`.
fn codes_npy(path: &Path, rows: &[[i32; 3]]) {
    let header = format!(
        "{{'descr': '<i4', 'fortran_order': False, 'shape': ({}, 3), }}\n",
        rows.len()
    );
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    for v in rows.iter().flatten() {
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn index_build_reads_npy_codes_with_an_id_file() {
    let dir = tempfile::tempdir().unwrap();
    let (codes, ids) = (dir.path().join("codes.npy"), dir.path().join("ids.txt"));
    // Items 10 and 30 share a SID: disambiguated in row order.
    codes_npy(&codes, &[[1, 2, 3], [0, 0, 7], [1, 2, 3]]);
    std::fs::write(&ids, "10\n20\r\n30\n").unwrap();
    let out = dir.path().join("idx");
    let build = |extra: &[&str]| {
        let mut args = vec!["index", "build", "--sids", p(&codes), "--layout", "4,4,8"];
        args.extend(["--out", p(&out)]);
        args.extend(extra);
        let o = sidx(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let query = |prefix: &str| {
        let q = sidx(&["index", "query", "--index", p(&out), "--prefix", prefix]);
        assert!(q.status.success());
        String::from_utf8_lossy(&q.stdout).into_owned()
    };
    for format in ["1", "2"] {
        build(&["--ids", p(&ids), "--format-version", format]);
        let text = query("1:1 2:2 3:3");
        assert!(text.contains("4:0") && text.contains("4:1"), "{text}");
        let text = query("1:0 2:0 3:7");
        assert!(text.contains("\"20\""), "{text}");
    }
    // Without an id file the rows are numbered.
    build(&[]);
    assert!(query("1:0 2:0 3:7").contains("\"1\""));

    let bad = |rows: &[[i32; 3]], id_text: &str, layout: &str, needles: &[&str]| {
        codes_npy(&codes, rows);
        std::fs::write(&ids, id_text).unwrap();
        let fresh = dir.path().join("bad-idx");
        let mut args = vec![
            "index",
            "build",
            "--sids",
            p(&codes),
            "--ids",
            p(&ids),
            "--out",
            p(&fresh),
        ];
        if !layout.is_empty() {
            args.extend(["--layout", layout]);
        }
        fails_with(&sidx(&args), needles);
        assert!(!fresh.join("CURRENT").exists(), "nothing published");
    };
    bad(
        &[[1, 2, 3], [0, 0, 9]],
        "a\nb\n",
        "4,4,8",
        &["codes.npy", "row 1, layer 3: code 9"],
    );
    bad(&[[1, 2, -3]], "a\n", "4,4,8", &["codes.npy", "code -3"]);
    bad(&[], "", "4,4,8", &["codes.npy", "no items"]);
    bad(
        &[[1, 2, 3], [0, 0, 1]],
        "a\n",
        "4,4,8",
        &["ids.txt", "1 item ids for 2 rows"],
    );
    bad(
        &[[1, 2, 3], [0, 0, 1]],
        "a\na\n",
        "4,4,8",
        &[
            "ids.txt:2:",
            "duplicate item id \"a\" (first seen on line 1)",
        ],
    );
    bad(
        &[[1, 2, 3], [0, 0, 1]],
        "a\n b\n",
        "4,4,8",
        &["ids.txt:2:", "surrounding spaces"],
    );
    bad(&[[1, 2, 3]], "a\n", "", &["codes.npy", "--layout"]);
    bad(
        &[[1, 2, 3]],
        "a\n",
        "4,4",
        &["3 codes per item", "2 layers"],
    );
}

#[test]
fn generate_runs_one_request_and_fails_clearly_on_bad_setup() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generator");
    let index = dir.path().join("index");
    let built = sidx(&[
        "index",
        "build",
        "--sids",
        p(&fixtures.join("sids.tsv")),
        "--out",
        p(&index),
    ]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let model = fixtures.join("model_kv.onnx");
    let args = |history: &str| {
        vec![
            "generate".to_string(),
            "--index".into(),
            p(&index).into(),
            "--model".into(),
            p(&model).into(),
            "--history".into(),
            history.into(),
            "--beam".into(),
            "10".into(),
            "--top-k".into(),
            "3".into(),
            "--json".into(),
        ]
    };
    let run = |a: Vec<String>| sidx(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args("9,10,11,12"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["invalid_sids"], 0);
    assert!(v["items"].as_array().unwrap().len() >= 3);

    fails_with(&run(args("9,nope")), &["history_item_ids", "nope"]);
    let mut zero = args("9");
    zero[8] = "0".into();
    fails_with(&run(zero), &["beam_width"]);
    // A missing ONNX Runtime library is a start-up error, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_sidx"))
        .args(["--log", "warn"])
        .args(args("9"))
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    fails_with(
        &out,
        &[
            "ONNX Runtime library not found",
            "/nonexistent/libonnxruntime.so",
            "fetch-onnxruntime.sh",
        ],
    );
    // A model that is not a decoder.
    let mut bad = args("9");
    bad[4] = p(&fixtures.join("bad_contract.onnx")).into();
    bad.extend([
        "--sidecar".into(),
        p(&fixtures.join("generator.json")).into(),
    ]);
    fails_with(&run(bad), &["bad_contract.onnx", "decoder contract"]);
}

#[test]
fn demo_runs_the_pipeline_and_serves_generate_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let run = sidx(&[
        "demo",
        "--items",
        "3000",
        "--codebook-size",
        "32",
        "--users",
        "20",
        "--out",
        p(&out),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for f in [
        "rq/sids.tsv",
        "rq/hourglass.svg",
        "top3/sids.tsv",
        "serve/index/CURRENT",
        "serve/generator-index/CURRENT",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("serve/generate.json")).unwrap()).unwrap();
    assert_eq!(s["users"], 20);
    assert_eq!(s["constrained_invalid"], 0);
    assert!(s["constrained_sids"].as_u64().unwrap() >= 20 * 10);
    assert!(
        s["unconstrained_sids"].as_u64().unwrap() >= s["unconstrained_invalid"].as_u64().unwrap()
    );
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("constrained 0 of"), "{text}");
}

/// A model folder in `work` holding `files` of the HF fixture `name`
/// (without its sidecar), and an index of the fixture SIDs.
fn model_folder(work: &Path, name: &str, files: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name);
    let model = work.join(name);
    std::fs::create_dir(&model).unwrap();
    for f in files {
        std::fs::copy(fixture.join(f), model.join(f)).unwrap();
    }
    let index = work.join("idx");
    let sids = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generator/sids.tsv");
    let built = sidx(&["index", "build", "--sids", p(&sids), "--out", p(&index)]);
    assert!(built.status.success());
    (fixture, model, index)
}

/// Runs `sidx generator init --model M --index I` plus `extra`; asserts success.
fn generator_init(model: &Path, index: &Path, extra: &[&str]) {
    let mut args = vec![
        "generator",
        "init",
        "--model",
        p(model),
        "--index",
        p(index),
    ];
    args.extend_from_slice(extra);
    let out = sidx(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sidecars(written: &Path, committed: &Path) -> (serde_json::Value, serde_json::Value) {
    let read = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("generator.json")).unwrap()).unwrap()
    };
    (read(written), read(committed))
}

fn generate_in(model: &Path, index: &Path) -> Output {
    sidx(&[
        "generate",
        "--model",
        p(model),
        "--index",
        p(index),
        "--history",
        "9,10,11",
        "--json",
    ])
}

/// A model folder without a sidecar is refused with what the file is and the
/// command that writes it; `sidx generator init` writes one from the export's
/// graph and config.json and the index, and the folder then generates.
#[test]
fn generator_init_writes_the_sidecar_a_model_folder_lacks() {
    let work = tempfile::tempdir().unwrap();
    let files = [
        "encoder_model.onnx",
        "decoder_model.onnx",
        "decoder_with_past_model.onnx",
        "config.json",
    ];
    let (fixture, model, index) = model_folder(work.path(), "t5", &files);
    fails_with(
        &generate_in(&model, &index),
        &["generator.json", "not found", "sidx generator init"],
    );
    generator_init(&model, &index, &["--max-positions", "256"]);
    let (written, committed) = sidecars(&model, &fixture);
    for key in [
        "vocab_size",
        "pad_id",
        "bos_id",
        "end_of_sid_id",
        "sid_token_offset",
        "codebook_sizes",
        "sid_token_limit",
        "max_positions",
    ] {
        assert_eq!(written[key], committed[key], "{key}");
    }
    assert_eq!(
        written["decoder_start_id"], 0,
        "T5's decoder_start_token_id from config.json"
    );
    let out = generate_in(&model, &index);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second init does not overwrite without --force.
    fails_with(
        &sidx(&[
            "generator",
            "init",
            "--model",
            p(&model),
            "--index",
            p(&index),
        ]),
        &["exists", "--force"],
    );
}

/// An LLM-style export (SID tokens named in tokenizer.json, no BOS, a text
/// prompt): `generator init` writes the version-2 sidecar HF's prompts were
/// built with, and the folder generates with it.
#[test]
fn generator_init_writes_a_version_2_sidecar_from_the_tokenizer() {
    let work = tempfile::tempdir().unwrap();
    let files = ["model.onnx", "config.json", "tokenizer.json"];
    let (fixture, model, index) = model_folder(work.path(), "qwen2-llm", &files);
    generator_init(
        &model,
        &index,
        &[
            "--no-bos",
            "--sep-id",
            "1",
            "--end-of-sid-id",
            "1",
            "--sid-token-names",
            "<{letter}_{code}>",
            "--prompt-template",
            "The user bought {history}. Next:",
            "--prompt-separator",
            ", ",
            "--max-positions",
            "256",
            "--max-history-items",
            "8",
        ],
    );
    let (written, committed) = sidecars(&model, &fixture);
    assert_eq!(written, committed, "the sidecar the fixture was built with");
    let out = generate_in(&model, &index);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sidx hourglass --compare`: two quantize runs (rq-kmeans, rq-balanced)
/// in one table and one SVG, each with its method, collisions and MSE.
#[test]
fn hourglass_compares_methods_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let emb = small_catalog(dir.path(), 2000);
    let mut files = Vec::new();
    for method in ["rq-kmeans", "rq-balanced"] {
        let out = dir.path().join(method);
        let o = sidx(&[
            "quantize",
            "--embeddings",
            p(&emb),
            "--layers",
            "3",
            "--codebook-size",
            "16",
            "--method",
            method,
            "--out",
            p(&out),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        files.push(out.join("sids.tsv"));
    }
    let svg = dir.path().join("compare.svg");
    let o = sidx(&[
        "hourglass",
        "--compare",
        p(&files[0]),
        p(&files[1]),
        "--svg",
        p(&svg),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sets: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sets.as_array().unwrap().len(), 2);
    assert_eq!(sets[0]["method"], "rq-kmeans");
    assert_eq!(sets[1]["method"], "rq-balanced");
    for set in sets.as_array().unwrap() {
        assert!(set["mse"].as_f64().unwrap() > 0.0, "{set}");
        assert_eq!(set["report"]["items"], 2000);
    }
    // Balanced codes are flat: Gini near 0 on every layer, unlike rq-kmeans'.
    let gini = |s: &serde_json::Value, l: usize| s["report"]["layers"][l]["gini"].as_f64().unwrap();
    assert!((0..3).all(|l| gini(&sets[1], l) < 0.01));
    assert!((0..3).any(|l| gini(&sets[0], l) > 0.1));
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert!(
        doc.starts_with("<svg") && doc.matches("<polyline").count() == 6,
        "{doc}"
    );
    let table = sidx(&["hourglass", "--compare", p(&files[0]), p(&files[1])]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("rq-kmeans") && text.contains("rq-balanced"),
        "{text}"
    );
    // --compare needs two files.
    fails_with(
        &sidx(&["hourglass", "--compare", p(&files[0])]),
        &["compare"],
    );
}

/// `quantize --seeds`: one run per seed under OUT/seed-S, the comparison
/// table and the spread on stdout, seeds.json and seeds.svg; `encode`
/// with rq-joint codebooks reproduces their SIDs by taking the beam
/// quantizer.json records; a bad --kmeans-tol is refused naming the flag.
#[test]
fn quantize_over_seeds_reports_the_spread_and_encode_uses_the_recorded_beam() {
    let dir = tempfile::tempdir().unwrap();
    let emb = small_catalog(dir.path(), 2000);
    let out = dir.path().join("seeds");
    let o = sidx(&[
        "quantize",
        "--embeddings",
        p(&emb),
        "--codebook-size",
        "16",
        "--method",
        "rq-joint",
        "--seeds",
        "0,1,2",
        "--out",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("over 3 runs")
            && stdout.contains("colliding items")
            && stdout.contains("MSE"),
        "{stdout}"
    );
    let sets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("seeds.json")).unwrap()).unwrap();
    assert_eq!(sets.as_array().unwrap().len(), 3);
    assert!(
        sets.as_array()
            .unwrap()
            .iter()
            .all(|s| s["method"] == "rq-joint")
    );
    assert!(out.join("seeds.svg").is_file());
    let tables: Vec<SidTable> = (0..3)
        .map(|s| SidTable::read(&out.join(format!("seed-{s}/sids.tsv"))).unwrap())
        .collect();
    assert!(tables[0] != tables[1], "seeds change the SIDs");

    let enc = dir.path().join("enc.tsv");
    let e = sidx(&[
        "encode",
        "--codebooks",
        p(&out.join("seed-0/codebooks.npy")),
        "--embeddings",
        p(&emb),
        "--out",
        p(&enc),
    ]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    assert_eq!(SidTable::read(&enc).unwrap(), tables[0]);

    let bad = sidx(&[
        "quantize",
        "--embeddings",
        p(&emb),
        "--codebook-size",
        "16",
        "--kmeans-tol=1.5",
        "--out",
        p(&dir.path().join("bad")),
    ]);
    fails_with(&bad, &["--kmeans-tol", "[0, 1)"]);
    let twice = sidx(&[
        "quantize",
        "--embeddings",
        p(&emb),
        "--seeds",
        "3,4,3",
        "--out",
        p(&dir.path().join("twice")),
    ]);
    fails_with(&twice, &["--seeds", "seed 3 twice"]);
}

/// `bench quantize --embeddings FILE --no-faiss`: one row per sidx seeding
/// and method over real (here: written) embeddings, each with its beam and
/// a finite MSE; rq-joint's MSE is below rq-kmeans' at the same data.
#[test]
fn bench_quantize_reads_embeddings_and_prints_a_row_per_method() {
    let dir = tempfile::tempdir().unwrap();
    let emb = small_catalog(dir.path(), 3000);
    let o = sidx(&[
        "bench",
        "quantize",
        "--embeddings",
        p(&emb),
        "--codebook-size",
        "16",
        "--kmeans-init",
        "kmeans||",
        "--methods",
        "rq-balanced,rq-joint",
        "--no-faiss",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("3000 × 16-d"), "{stdout}");
    let mse = |name: &str| -> f64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {name} ")))
            .unwrap_or_else(|| panic!("no row {name}: {stdout}"));
        // From the right: the name may hold '|' (k-means||); MSE is the second-last cell.
        let cells: Vec<&str> = line
            .trim_end_matches('|')
            .rsplit('|')
            .map(str::trim)
            .collect();
        cells[1].parse().unwrap()
    };
    let (plain, joint) = (mse("sidx rq-kmeans (kmeans||)"), mse("sidx rq-joint"));
    assert!(mse("sidx rq-balanced").is_finite());
    assert!(joint < plain, "rq-joint {joint} vs rq-kmeans {plain}");
}

/// `sidx index build --sids DIR` on a `sidx quantize --out DIR`: the run's
/// codes, ids, codebooks and collision mode, the same index as from its
/// `sids.tsv` (every item's SID listed from the root), in either format.
#[test]
fn index_build_reads_a_quantize_output_folder_as_its_tsv() {
    let dir = tempfile::tempdir().unwrap();
    let (emb, ids) = catalog_with_ids(dir.path(), 2000);
    let everything = |root: &Path| {
        let q = sidx(&["index", "query", "--index", p(root), "--limit", "100000"]);
        assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
        let v: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 2000);
        v
    };
    for collisions in ["disambiguate", "share"] {
        // 2000 items in 4 × 4 × 4 codes: many share theirs.
        let run = dir.path().join(format!("q-{collisions}"));
        let args = ["--codebook-size", "4", "--collisions", collisions];
        quantize_into(&emb, &ids, &args, &run);
        let (_, rows, layers) = npy::read_codes(&run.join("codes.npy")).unwrap();
        assert_eq!((rows, layers), (2000, 3), "codes.npy: a row per item");
        for format in ["1", "2"] {
            let build = |sids: &Path, out: &Path| {
                let o = sidx(&[
                    "index",
                    "build",
                    "--sids",
                    p(sids),
                    "--format-version",
                    format,
                    "--out",
                    p(out),
                ]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            };
            let (from_tsv, from_run) = (
                dir.path().join(format!("tsv-{collisions}-{format}")),
                dir.path().join(format!("run-{collisions}-{format}")),
            );
            build(&run.join("sids.tsv"), &from_tsv);
            build(&run, &from_run);
            assert_eq!(everything(&from_tsv), everything(&from_run));
            let stored = std::fs::read_dir(from_run.join("versions"))
                .unwrap()
                .any(|v| v.unwrap().path().join("codebooks.npy").is_file());
            assert!(stored, "the run's codebooks are stored for updates");
        }
    }
    // --ids beside a run, and a folder with codes.npy but no quantizer.json, are refused.
    let run = dir.path().join("q-share");
    let out = dir.path().join("refused");
    let refused = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["index", "build", "--sids", p(&run), "--out", p(&out)];
        args.extend(extra);
        fails_with(&sidx(&args), needles);
        assert!(!out.join("CURRENT").exists(), "nothing published");
    };
    refused(&["--ids", p(&ids)], &["--ids", "sidx quantize", "ids.txt"]);
    std::fs::remove_file(run.join("quantizer.json")).unwrap();
    refused(&[], &["q-share", "quantizer.json"]);
}
