"""faiss-cpu's ResidualQuantizer, the peer of `sidx bench quantize`.

Trains on a random sample, encodes every row greedily (max_beam_size = 1),
and prints one JSON line: name, threads, train/encode seconds, MSE
(mean squared reconstruction error per vector, as sidx reports it).
"""

import argparse
import json
import time

import faiss
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--embeddings", required=True)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--train-sample", type=int, default=100_000)
    ap.add_argument("--kmeans-iters", type=int, default=25)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()

    x = np.load(a.embeddings, mmap_mode="r")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    nbits = int(np.log2(a.codebook_size))
    if 2**nbits != a.codebook_size:
        raise SystemExit("faiss needs a power-of-two codebook size")
    rng = np.random.default_rng(a.seed)
    sample = x[np.sort(rng.choice(n, size=min(a.train_sample, n), replace=False))]

    rq = faiss.ResidualQuantizer(d, a.layers, nbits)
    rq.max_beam_size = 1
    rq.train_type = faiss.ResidualQuantizer.Train_default
    rq.cp.niter = a.kmeans_iters
    rq.cp.seed = a.seed
    # Train on the whole sample, as sidx does (faiss would subsample to 256 points per centroid).
    rq.cp.max_points_per_centroid = max(256, (len(sample) + a.codebook_size - 1) // a.codebook_size)

    t0 = time.perf_counter()
    rq.train(sample)
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    codes = rq.compute_codes(x)
    encode_s = time.perf_counter() - t1

    mse = 0.0
    for i in range(0, n, 100_000):
        xh = rq.decode(codes[i : i + 100_000])
        mse += float(((x[i : i + 100_000] - xh) ** 2).sum())
    print(
        json.dumps(
            {
                "name": f"faiss {faiss.__version__}",
                "threads": faiss.omp_get_max_threads(),
                "train_seconds": train_s,
                "encode_seconds": encode_s,
                "mse": mse / n,
            }
        )
    )


if __name__ == "__main__":
    main()
