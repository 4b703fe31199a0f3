"""The Spark recipe end to end at small scale: python/sidx_spark.py trains
codebooks on a sample and encodes Parquet shards with mapInArrow in local[2];
`sidx index build` merges its SID shards; the index must agree with
single-process `sidx encode` on every item's quantizer codes, and
disambiguate the items that share them."""

import json
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import sidx
import sidx_spark
from conftest import ROOT, run, sidx_bin

N, D, SHARDS, M, L = 20_000, 32, 4, 64, 3


def test_arrow_batches_are_viewed_without_copies(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run("quantize", "--embeddings", tmp_path / "x.npy", "--layers", "2", "--codebook-size", "8", "--out", tmp_path / "q")
    q = sidx.Quantizer.load(tmp_path / "q")
    flat = pa.array(x.reshape(-1))
    offsets = np.arange(0, 1001 * 16, 16)
    columns = {
        "list": pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), flat),
        "large_list": pa.LargeListArray.from_arrays(pa.array(offsets), flat),
        "fixed_size_list": pa.FixedSizeListArray.from_arrays(flat, 16),
    }
    for kind, col in columns.items():
        for lo, hi in [(0, 1000), (137, 611)]:  # whole, and a slice (offsets not at 0)
            part = col.slice(lo, hi - lo)
            m = sidx_spark.embedding_matrix(part, 16)
            assert m.shape == (hi - lo, 16) and m.dtype == np.float32, kind
            addr = flat.buffers()[1].address + lo * 16 * 4
            assert m.__array_interface__["data"][0] == addr, f"{kind}: copied"
            np.testing.assert_array_equal(m, x[lo:hi])
            batch = pa.RecordBatch.from_arrays([pa.array([f"i{i}" for i in range(lo, hi)]), part], names=["id", "e"])
            (out,) = sidx_spark.encode_batches(iter([batch]), q, "e", "id")
            assert out.schema.names == ["id", "codes"]
            assert out.column("codes").to_pylist() == q.encode(x[lo:hi]).tolist()


def test_spark_shards_merge_into_the_single_process_index(tmp_path, java):
    emb = tmp_path / "emb"
    sidx_spark.make_synthetic(emb, N, D, SHARDS, seed=7, id_column="item", embedding_column="vec")
    work = tmp_path / "work"
    cmd = [
        sys.executable, ROOT / "python/sidx_spark.py", "--embeddings", emb, "--out", work,
        "--embedding-column", "vec", "--id-column", "item", "--master", "local[2]",
        "--layers", L, "--codebook-size", M, "--train-sample", 5000, "--batch-size", 1500,
        "--sidx", sidx_bin(),
    ]  # fmt: skip
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["items"] == N and report["train_items"] == 5000 and report["cores"] == 2
    codebooks = work / "quantizer/codebooks.npy"

    # Spark's shards: raw codes, no disambiguation, one row per item.
    spark = pq.read_table(work / "sids", columns=["id", "codes"])
    assert spark.num_rows == N
    assert all(len(c) == L for c in spark.column("codes").to_pylist())

    built = json.loads(run("index", "build", "--sids", work / "sids", "--codebooks", codebooks, "--out", tmp_path / "idx"))
    assert built["items"] == N
    assert built["sids"] == N  # every item has its own SID

    run("encode", "--codebooks", codebooks, "--embeddings", emb, "--embedding-column", "vec",
        "--id-column", "item", "--out", tmp_path / "x.parquet")  # fmt: skip
    single = pq.read_table(tmp_path / "x.parquet")
    want = {i: tuple(c[:L]) for i, c in zip(single.column("id").to_pylist(), single.column("codes").to_pylist())}
    assert len(want) == N

    index = sidx.Index(tmp_path / "idx")
    assert index.stats()["items"] == N
    groups = defaultdict(list)
    for item, codes in want.items():
        tokens = index.tokens(index.sid(item))
        assert [layer for layer, _ in tokens[:L]] == list(range(1, L + 1)), item
        assert tuple(code for _, code in tokens[:L]) == codes, item  # (ii)
        groups[codes].append((item, tokens[L:]))

    shared = [g for g in groups.values() if len(g) > 1]
    assert shared, "the synthetic catalog should have items that share codes"
    for g in groups.values():  # (iii)
        if len(g) == 1:
            assert g[0][1] == [], g  # a SID of its own: no disambiguation token
            continue
        assert all(len(extra) == 1 and extra[0][0] == L + 1 for _, extra in g), g
        # distinct, 0 … k-1 in item-id order
        assert [extra[0][1] for _, extra in sorted(g)] == list(range(len(g))), g
