//! Parquet in and out: embeddings from shards give the SIDs the same `.npy`
//! gives, SIDs round-trip through Parquet, headerless shards (as Spark
//! writes them) build an index, and every kind of bad input is refused
//! naming the file, the column and the row.

mod common;

use common::{fails_with, p, sidx};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Float64Builder, ListBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;
use sidx::index::IndexStore;
use sidx::npy;
use sidx::shards::{self, SidColumns};
use sidx::sid::{CollisionMode, Layout, SidTable, Token};
use sidx::synth::{self, SynthConfig};

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "sidx failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// `rows` of `x` (row-major, `dim` wide) as a `list<float32>` column.
fn list_f32(x: &[f32], dim: usize) -> ArrayRef {
    let mut b = ListBuilder::new(Float32Builder::new());
    for row in x.chunks(dim) {
        b.values().append_slice(row);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn strings(ids: &[String]) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(ids))
}

struct Catalog {
    x: Vec<f32>,
    dim: usize,
    ids: Vec<String>,
}

fn catalog(items: usize) -> Catalog {
    let cfg = SynthConfig {
        items,
        dim: 16,
        clusters: 30,
        ..SynthConfig::default()
    };
    Catalog {
        x: synth::generate(&cfg),
        dim: cfg.dim,
        ids: synth::ids(items),
    }
}

/// The catalog as `.npy` + ids file, and as `shards` Parquet files in a folder.
fn write_both(dir: &Path, c: &Catalog, shards: usize) -> (PathBuf, PathBuf, PathBuf) {
    let npy_path = dir.join("emb.npy");
    npy::write(&npy_path, &[c.ids.len(), c.dim], &c.x).unwrap();
    let ids_path = dir.join("ids.txt");
    std::fs::write(&ids_path, c.ids.join("\n")).unwrap();
    let folder = dir.join("emb");
    std::fs::create_dir(&folder).unwrap();
    let per = c.ids.len().div_ceil(shards);
    for s in 0..shards {
        let rows = s * per..((s + 1) * per).min(c.ids.len());
        write_parquet(
            &folder.join(format!("part-{s:05}.parquet")),
            vec![
                ("id", strings(&c.ids[rows.clone()])),
                (
                    "embedding",
                    list_f32(&c.x[rows.start * c.dim..rows.end * c.dim], c.dim),
                ),
            ],
        );
    }
    // What Spark leaves beside its shards.
    std::fs::write(folder.join("_SUCCESS"), "").unwrap();
    std::fs::write(folder.join(".part-00000.parquet.crc"), "x").unwrap();
    (npy_path, ids_path, folder)
}

#[test]
fn parquet_embeddings_give_the_sids_npy_gives() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(2500);
    let (npy_path, ids_path, folder) = write_both(dir.path(), &c, 3);
    let q_npy = dir.path().join("q-npy");
    let q_pq = dir.path().join("q-pq");
    let common = ["--layers", "3", "--codebook-size", "16", "--seed", "7"];
    ok(&sidx(
        &[
            &[
                "quantize",
                "--embeddings",
                p(&npy_path),
                "--ids",
                p(&ids_path),
            ][..],
            &common,
            &["--out", p(&q_npy)],
        ]
        .concat(),
    ));
    ok(&sidx(
        &[
            &["quantize", "--embeddings", p(&folder)][..],
            &common,
            &["--out", p(&q_pq)],
        ]
        .concat(),
    ));
    let a = SidTable::read(&q_npy.join("sids.tsv")).unwrap();
    let b = SidTable::read(&q_pq.join("sids.tsv")).unwrap();
    assert_eq!(a, b, "quantize: Parquet shards and .npy disagree");
    assert_eq!(
        std::fs::read(q_npy.join("codebooks.npy")).unwrap(),
        std::fs::read(q_pq.join("codebooks.npy")).unwrap()
    );

    // encode, streamed from the shards, written as TSV and as Parquet.
    let cb = q_npy.join("codebooks.npy");
    let tsv = dir.path().join("enc.tsv");
    let pq = dir.path().join("enc.parquet");
    ok(&sidx(&[
        "encode",
        "--codebooks",
        p(&cb),
        "--embeddings",
        p(&folder),
        "--out",
        p(&tsv),
    ]));
    ok(&sidx(&[
        "encode",
        "--codebooks",
        p(&cb),
        "--embeddings",
        p(&folder),
        "--out",
        p(&pq),
    ]));
    let from_tsv = SidTable::read(&tsv).unwrap();
    let columns = SidColumns {
        layout: None,
        collisions: CollisionMode::Disambiguate,
    };
    let from_pq = shards::read_sids(&pq, &columns).unwrap();
    assert_eq!(from_tsv, from_pq);
    assert_eq!(
        from_tsv.iter().map(|r| r.1.to_vec()).collect::<Vec<_>>(),
        a.iter().map(|r| r.1.to_vec()).collect::<Vec<_>>(),
        "encode of the shards = quantize's SIDs"
    );

    // The Parquet SIDs build the same index as the TSV.
    let idx_tsv = dir.path().join("idx-tsv");
    let idx_pq = dir.path().join("idx-pq");
    ok(&sidx(&[
        "index",
        "build",
        "--sids",
        p(&tsv),
        "--out",
        p(&idx_tsv),
    ]));
    ok(&sidx(&[
        "index",
        "build",
        "--sids",
        p(&pq),
        "--out",
        p(&idx_pq),
    ]));
    let x = IndexStore::new(&idx_tsv).open_current().unwrap();
    let y = IndexStore::new(&idx_pq).open_current().unwrap();
    assert_eq!(
        x.entries().collect::<Vec<_>>(),
        y.entries().collect::<Vec<_>>()
    );
}

#[test]
fn fixed_size_lists_float64_and_integer_ids_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(300);
    let path = dir.path().join("e.parquet");
    let mut b = FixedSizeListBuilder::new(Float64Builder::new(), c.dim as i32);
    for row in c.x.chunks(c.dim) {
        b.values()
            .append_slice(&row.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
        b.append(true);
    }
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(1000..1300));
    write_parquet(&path, vec![("vec", Arc::new(b.finish())), ("item_id", ids)]);
    let mut seen = Vec::new();
    let read = shards::read_embeddings(&path, &Default::default(), |batch| {
        seen.extend_from_slice(batch.x);
        assert_eq!(batch.ids[0], "1000");
        Ok::<_, shards::ShardError>(())
    })
    .unwrap();
    assert_eq!((read.rows, read.dim, read.has_ids), (300, c.dim, true));
    assert_eq!(seen, c.x);
}

#[test]
fn bad_parquet_embeddings_name_file_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = catalog(40);
    let run = |path: &Path| {
        sidx(&[
            "quantize",
            "--embeddings",
            p(path),
            "--layers",
            "2",
            "--codebook-size",
            "4",
            "--out",
            p(&d.join("out")),
        ])
    };
    let ids = || strings(&c.ids);

    let mut x = c.x.clone();
    x[7 * c.dim + 3] = f32::NAN;
    let nan = d.join("nan.parquet");
    write_parquet(
        &nan,
        vec![("id", ids()), ("embedding", list_f32(&x, c.dim))],
    );
    fails_with(
        &run(&nan),
        &["nan.parquet", "\"embedding\"", "row 7", "NaN"],
    );

    let mut b = ListBuilder::new(Float32Builder::new());
    for (i, row) in c.x.chunks(c.dim).enumerate() {
        b.values()
            .append_slice(if i == 11 { &row[..5] } else { row });
        b.append(true);
    }
    let ragged = d.join("ragged.parquet");
    write_parquet(
        &ragged,
        vec![("id", ids()), ("embedding", Arc::new(b.finish()))],
    );
    fails_with(
        &run(&ragged),
        &["ragged.parquet", "row 11", "5 values", "ragged"],
    );

    let mut b = ListBuilder::new(Float32Builder::new());
    for (i, row) in c.x.chunks(c.dim).enumerate() {
        b.values().append_slice(row);
        b.append(i != 3);
    }
    let null = d.join("null.parquet");
    write_parquet(
        &null,
        vec![("id", ids()), ("embedding", Arc::new(b.finish()))],
    );
    fails_with(&run(&null), &["null.parquet", "row 3", "null embedding"]);

    let strs: ArrayRef = Arc::new(StringArray::from_iter_values(c.ids.iter().map(|_| "x")));
    let wrong = d.join("wrong.parquet");
    write_parquet(&wrong, vec![("id", ids()), ("embedding", strs)]);
    fails_with(
        &run(&wrong),
        &["wrong.parquet", "\"embedding\"", "Utf8", "float32"],
    );

    let missing = d.join("missing.parquet");
    write_parquet(
        &missing,
        vec![
            ("id", ids()),
            ("a", list_f32(&c.x, c.dim)),
            ("b", list_f32(&c.x, c.dim)),
        ],
    );
    fails_with(
        &run(&missing),
        &[
            "missing.parquet",
            "no column \"embedding\"",
            "2 list columns",
        ],
    );
    fails_with(
        &sidx(&[
            "quantize",
            "--embeddings",
            p(&missing),
            "--embedding-column",
            "vectors",
            "--out",
            p(&d.join("out")),
        ]),
        &[
            "missing.parquet",
            "no column \"vectors\"",
            "columns: id, a, b",
        ],
    );

    // The same id in two shards: both places named.
    let shards_dir = d.join("dup");
    std::fs::create_dir(&shards_dir).unwrap();
    write_parquet(
        &shards_dir.join("part-0.parquet"),
        vec![
            ("id", strings(&c.ids[..20])),
            ("embedding", list_f32(&c.x[..20 * c.dim], c.dim)),
        ],
    );
    let mut again = c.ids[20..].to_vec();
    again[5] = c.ids[2].clone();
    write_parquet(
        &shards_dir.join("part-1.parquet"),
        vec![
            ("id", strings(&again)),
            ("embedding", list_f32(&c.x[20 * c.dim..], c.dim)),
        ],
    );
    fails_with(
        &run(&shards_dir),
        &[
            "part-1.parquet",
            "row 5",
            "duplicate item id",
            "part-0.parquet at row 2",
        ],
    );

    let garbage = d.join("garbage.parquet");
    std::fs::write(&garbage, b"PAR1 not really").unwrap();
    fails_with(
        &run(&garbage),
        &["garbage.parquet", "not readable as Parquet"],
    );
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(&run(&empty), &["empty", "holds no .parquet files"]);
    assert!(!d.join("out").exists(), "no output from failed runs");
}

#[test]
fn sids_round_trip_through_parquet_with_variable_lengths() {
    let layout = Layout::new(vec![8, 8, 8]).unwrap();
    let header = sidx::sid::SidHeader::new(&layout, CollisionMode::Disambiguate);
    let mut table = SidTable::new(header);
    let t = |l, c| Token::new(l, c);
    table.push("a", &[t(1, 3), t(2, 7), t(3, 1)]);
    table.push("b", &[t(1, 3), t(3, 1)]); // layer 2 dropped
    table.push("c", &[t(1, 3), t(2, 7), t(3, 1), t(4, 1)]); // disambiguated
    table.push("d", &[t(2, 0)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.parquet");
    sidx::fsx::write_atomic(&path, |w| shards::write_sids(&table, w)).unwrap();
    let columns = SidColumns {
        layout: None,
        collisions: CollisionMode::Share,
    };
    assert_eq!(shards::read_sids(&path, &columns).unwrap(), table);
}

/// Headerless shards (what a Spark job writes): layer columns, integer codes.
fn spark_like(dir: &Path, rows: &[(&str, [i64; 2])], split: usize) -> PathBuf {
    let folder = dir.join("sids");
    std::fs::create_dir_all(&folder).unwrap();
    for (s, chunk) in rows.chunks(split).enumerate() {
        let ids: Vec<String> = chunk.iter().map(|r| r.0.to_owned()).collect();
        let l1: ArrayRef = Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.1[0])));
        let l2: ArrayRef = Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.1[1])));
        write_parquet(
            &folder.join(format!("part-{s:05}-x.snappy.parquet")),
            vec![("id", strings(&ids)), ("layer_1", l1), ("layer_2", l2)],
        );
    }
    folder
}

#[test]
fn headerless_shards_are_disambiguated_in_id_order_whatever_the_split() {
    let rows = [
        ("z", [1, 2]),
        ("y", [1, 2]),
        ("m", [0, 3]),
        ("a", [1, 2]),
        ("q", [3, 3]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut tables = Vec::new();
    for split in [1, 2, 5] {
        let d = dir.path().join(format!("split-{split}"));
        let folder = spark_like(&d, &rows, split);
        let columns = SidColumns {
            layout: Some(Layout::new(vec![4, 4]).unwrap()),
            collisions: CollisionMode::Disambiguate,
        };
        tables.push(shards::read_sids(&folder, &columns).unwrap());
        if split == 2 {
            // Without a layout it is refused; with one the CLI builds the index.
            fails_with(
                &sidx(&[
                    "index",
                    "build",
                    "--sids",
                    p(&folder),
                    "--out",
                    p(&d.join("i")),
                ]),
                &["part-00000-x.snappy.parquet", "sidx.header", "--layout"],
            );
            let out = ok(&sidx(&[
                "index",
                "build",
                "--sids",
                p(&folder),
                "--layout",
                "4,4",
                "--out",
                p(&d.join("i")),
            ]));
            assert!(out.contains("\"items\":5"), "{out}");
            let index = IndexStore::new(&d.join("i")).open_current().unwrap();
            let sid = index.sid("a").unwrap();
            assert_eq!(
                index.tokens(&sid),
                vec![Token::new(1, 1), Token::new(2, 2), Token::new(3, 0)]
            );
        }
    }
    assert!(
        tables.windows(2).all(|w| w[0] == w[1]),
        "the split changed the SIDs"
    );
    let t = &tables[0];
    let sid_of = |id: &str| t.iter().find(|r| r.0 == id).unwrap().1.to_vec();
    // a < y < z: disambiguation codes 0, 1, 2 in id order.
    for (id, code) in [("a", 0), ("y", 1), ("z", 2)] {
        assert_eq!(sid_of(id).last(), Some(&Token::new(3, code)), "{id}");
    }
    assert_eq!(sid_of("m"), vec![Token::new(1, 0), Token::new(2, 3)]);
}

#[test]
fn bad_sid_shards_name_file_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let layout = || Some(Layout::new(vec![4, 4]).unwrap());
    let read = |folder: &Path| {
        shards::read_sids(
            folder,
            &SidColumns {
                layout: layout(),
                collisions: CollisionMode::Disambiguate,
            },
        )
        .unwrap_err()
        .to_string()
    };
    let out_of_range = spark_like(&dir.path().join("a"), &[("x", [1, 2]), ("y", [1, 9])], 5);
    let e = read(&out_of_range);
    assert!(
        e.contains("layer_2") && e.contains("row 1") && e.contains("out of range"),
        "{e}"
    );
    let negative = spark_like(&dir.path().join("b"), &[("x", [-1, 2])], 5);
    let e = read(&negative);
    assert!(
        e.contains("layer_1") && e.contains("row 0") && e.contains("-1"),
        "{e}"
    );
    let dup = spark_like(
        &dir.path().join("c"),
        &[("x", [1, 2]), ("y", [1, 1]), ("x", [0, 0])],
        2,
    );
    let e = read(&dup);
    assert!(
        e.contains("part-00001-x.snappy.parquet") && e.contains("duplicate item id \"x\""),
        "{e}"
    );
    // A layout with too few layers, or too many, is refused, not guessed at.
    let rows = [("x", [1, 2]), ("y", [1, 1])];
    let folder = spark_like(&dir.path().join("d"), &rows, 5);
    for (sizes, needle) in [
        (vec![4], "2 codes, the layout has 1 layers"),
        (vec![4, 4, 4], "no SID has a code of layer 3"),
    ] {
        let e = shards::read_sids(
            &folder,
            &SidColumns {
                layout: Some(Layout::new(sizes).unwrap()),
                collisions: CollisionMode::Disambiguate,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(needle) && e.contains("is the layout right?"),
            "{e}"
        );
    }
    let no_codes = dir.path().join("n.parquet");
    write_parquet(
        &no_codes,
        vec![
            ("id", strings(&["x".to_owned()])),
            ("tokens", strings(&["1".to_owned()])),
        ],
    );
    let e = read(&no_codes);
    assert!(
        e.contains("n.parquet") && e.contains("no SID columns") && e.contains("tokens"),
        "{e}"
    );
}

/// Quantizes the catalog (from .npy) into `dir/q`: 2 layers of 8 codes.
fn quantized(dir: &Path, c: &Catalog) -> PathBuf {
    let (npy_path, ids_path, _) = write_both(dir, c, 1);
    let q = dir.join("q");
    ok(&sidx(&[
        "quantize",
        "--embeddings",
        p(&npy_path),
        "--ids",
        p(&ids_path),
        "--layers",
        "2",
        "--codebook-size",
        "8",
        "--out",
        p(&q),
    ]));
    q
}

#[test]
fn index_update_takes_parquet_upserts() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(1200);
    let q = quantized(dir.path(), &c);
    let root = dir.path().join("idx");
    ok(&sidx(&[
        "index",
        "build",
        "--sids",
        p(&q.join("sids.tsv")),
        "--codebooks",
        p(&q.join("codebooks.npy")),
        "--out",
        p(&root),
    ]));
    // New items by embedding (Parquet, ids in a column) and by headerless SIDs.
    let new_ids: Vec<String> = (0..10).map(|i| format!("new-{i}")).collect();
    let emb = dir.path().join("new.parquet");
    write_parquet(
        &emb,
        vec![
            ("id", strings(&new_ids)),
            ("embedding", list_f32(&c.x[..10 * c.dim], c.dim)),
        ],
    );
    let sids = spark_like(
        &dir.path().join("s"),
        &[("sid-0", [5, 6]), ("sid-1", [7, 7])],
        1,
    );
    let out = ok(&sidx(&[
        "index",
        "update",
        "--index",
        p(&root),
        "--upserts",
        p(&emb),
        "--upsert-sids",
        p(&sids),
    ]));
    assert!(out.contains("\"added\":12"), "{out}");
    let index = IndexStore::new(&root).open_current().unwrap();
    assert_eq!(index.item_count(), 1212);
    // An encoded newcomer lands on the SID of the item whose embedding it copies.
    let base = index.sid(&c.ids[0]).unwrap();
    assert_eq!(index.sid("new-0").unwrap()[..2], base[..2]);
    assert!(index.sid("sid-1").is_some());
}

#[test]
fn an_encode_error_on_the_first_batch_stops_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(2000);
    let q = quantized(dir.path(), &c);
    // 200 000 rows of dimension 2: four record batches, the reader a batch
    // ahead; the first one is refused (the codebooks are 16-d) and the run
    // must end there with the error, not wait on the reader.
    let rows = 200_000;
    let ids: Vec<String> = (0..rows).map(|i| format!("i{i}")).collect();
    let x: Vec<f32> = (0..rows * 2).map(|i| i as f32).collect();
    let path = dir.path().join("narrow.parquet");
    write_parquet(
        &path,
        vec![("id", strings(&ids)), ("embedding", list_f32(&x, 2))],
    );
    fails_with(
        &sidx(&[
            "encode",
            "--codebooks",
            p(&q.join("codebooks.npy")),
            "--embeddings",
            p(&path),
            "--out",
            p(&dir.path().join("out.tsv")),
        ]),
        &["narrow.parquet", "dimension 2", "have 16"],
    );
    assert!(!dir.path().join("out.tsv").exists());
}
