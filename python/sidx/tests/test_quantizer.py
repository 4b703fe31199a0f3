"""sidx.Quantizer and sidx.hourglass against what the sidx binary writes."""

import json

import numpy as np
import pytest

import sidx
from conftest import run


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(20, 12)).astype(np.float32)
    x = (centers[rng.integers(0, 20, size=3000)] + 0.3 * rng.normal(size=(3000, 12))).astype(np.float32)
    np.save(d / "emb.npy", x)
    run("quantize", "--embeddings", d / "emb.npy", "--layers", "3", "--codebook-size", "16", "--out", d / "q")
    return d, x


def sid_codes(path, layers):
    """Quantizer codes per item of a SID file (disambiguation dropped)."""
    rows = []
    for line in path.read_text().splitlines()[1:]:
        tokens = line.split("\t")[1].split()
        rows.append([int(t.split(":")[1]) for t in tokens[:layers]])
    return np.array(rows)


def test_encode_equals_the_cli(quantized):
    d, x = quantized
    q = sidx.Quantizer.load(d / "q")
    assert (q.dim, q.layers, q.codebook_sizes, q.beam, q.method) == (12, 3, [16, 16, 16], 1, "rq-kmeans")
    codes = q.encode(x)
    assert codes.shape == (3000, 3) and codes.dtype == np.int32
    assert np.array_equal(codes, sid_codes(d / "q/sids.tsv", 3))
    run("encode", "--codebooks", d / "q/codebooks.npy", "--embeddings", d / "emb.npy", "--beam", "4", "--out", d / "b4.tsv")
    assert np.array_equal(q.encode(x, beam=4), sid_codes(d / "b4.tsv", 3))
    recon = q.decode(codes.astype(np.int64))
    assert recon.shape == x.shape
    mse = float(((recon - x) ** 2).sum(axis=1).mean())
    meta = json.loads((d / "q/quantizer.json").read_text())
    assert mse == pytest.approx(meta["mse"], rel=1e-4)


def test_encode_refuses_bad_arrays(quantized):
    d, x = quantized
    q = sidx.Quantizer.load(d / "q/codebooks.npy")
    with pytest.raises(ValueError, match="12"):
        q.encode(np.zeros((4, 5), dtype=np.float32))
    assert np.array_equal(q.encode(x[::2]), q.encode(np.ascontiguousarray(x[::2])))
    assert np.array_equal(q.encode(np.asfortranarray(x)), q.encode(x))
    bad = x[:10].copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="row 4"):
        q.encode(bad)
    with pytest.raises(TypeError, match="float32 array.*float64.*shape"):
        q.encode(x.astype(np.float64))
    with pytest.raises(TypeError, match="got a list"):
        q.encode([[0.0] * 12])
    with pytest.raises(ValueError, match="outside its codebook"):
        q.decode(np.array([[0, 16, 0]]))
    with pytest.raises(sidx.SidxError, match="nowhere.*No such file"):
        sidx.Quantizer.load(d / "nowhere")


def test_hourglass_equals_the_report_quantize_writes(quantized):
    d, _ = quantized
    codes = sid_codes(d / "q/sids.tsv", 3)
    report = sidx.hourglass(codes, [16, 16, 16])
    written = json.loads((d / "q/hourglass.json").read_text())
    assert report["layers"] == written["layers"]
    with pytest.raises(ValueError, match="3 columns"):
        sidx.hourglass(codes, [16, 16])
    with pytest.raises(ValueError, match="outside its codebook"):
        sidx.hourglass(codes, [4, 16, 16])


def test_encode_releases_the_gil(quantized):
    """Python keeps running in another thread while encode works."""
    import threading
    import time

    d, _ = quantized
    q = sidx.Quantizer.load(d / "q")
    x = np.random.default_rng(0).normal(size=(400_000, 12)).astype(np.float32)
    window = {}

    def work():
        window["start"] = time.perf_counter()
        q.encode(x, beam=4)
        window["end"] = time.perf_counter()

    worker = threading.Thread(target=work)
    ticks = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    start, end = window["start"], window["end"]
    assert end - start > 0.05, "encode too quick to tell"
    inside = [t for t in ticks if start + 0.01 < t < end - 0.01]
    assert len(inside) > 1000, f"{len(inside)} ticks of the main thread while encode ran {end - start:.3f}s"
