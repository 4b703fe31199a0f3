"""Parquet written by pyarrow (as pandas and Spark write it) through the sidx
binary, and its Parquet SIDs read back by pyarrow."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import sidx
from conftest import run


def test_pyarrow_shards_encode_to_parquet_sids(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    ids = [f"sku-{i}" for i in range(2000)]
    np.save(tmp_path / "emb.npy", x)
    run("quantize", "--embeddings", tmp_path / "emb.npy", "--layers", "2", "--codebook-size", "8", "--out", tmp_path / "q")
    shards = tmp_path / "emb"
    shards.mkdir()
    for s in range(4):
        rows = slice(s * 500, (s + 1) * 500)
        table = pa.table({
            "item": pa.array(ids[rows]),
            "vec": pa.array(list(x[rows]), type=pa.list_(pa.float32(), 8)),
        })
        pq.write_table(table, shards / f"part-{s}.parquet", compression="zstd")
    out = tmp_path / "sids.parquet"
    run("encode", "--codebooks", tmp_path / "q/codebooks.npy", "--embeddings", shards,
        "--embedding-column", "vec", "--id-column", "item", "--out", out)
    t = pq.read_table(out)
    assert t.column_names == ["id", "codes"]
    assert t.column("id").to_pylist() == ids
    codes = t.column("codes").to_pylist()
    want = sidx.Quantizer.load(tmp_path / "q").encode(x).tolist()
    assert [c[:2] for c in codes] == want
    # Items sharing codes carry a third, disambiguation code.
    dup = {}
    for c in want:
        dup[tuple(c)] = dup.get(tuple(c), 0) + 1
    assert [len(c) == 3 for c in codes] == [dup[tuple(c)] > 1 for c in want]
    assert b"sidx.header" in pq.read_metadata(out).metadata
