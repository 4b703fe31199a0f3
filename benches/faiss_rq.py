"""faiss-cpu's ResidualQuantizer, the peer of `sidx bench quantize`.

Trains on a random sample and encodes every row: greedily
(max_beam_size = 1, plain residual k-means) and, when --beam > 1, with
faiss's default beam training (beam-search residuals, progressive-dimension
k-means) and beam encoding, and beam training with plain k-means. Prints one JSON line per run: name, threads,
beam, train/encode seconds, MSE (mean squared reconstruction error per
vector, as sidx reports it).
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
    ap.add_argument("--beam", type=int, default=5)
    a = ap.parse_args()

    x = np.load(a.embeddings, mmap_mode="r")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    nbits = int(np.log2(a.codebook_size))
    if 2**nbits != a.codebook_size:
        raise SystemExit("faiss needs a power-of-two codebook size")
    rng = np.random.default_rng(a.seed)
    sample = x[np.sort(rng.choice(n, size=min(a.train_sample, n), replace=False))]

    # Train on the whole sample, as sidx does (faiss would subsample to 256 points per centroid).
    max_points = max(256, (len(sample) + a.codebook_size - 1) // a.codebook_size)
    runs = [("faiss RQ greedy", 1, faiss.ResidualQuantizer.Train_default)]
    if a.beam > 1:
        # faiss's own default training: beam-search residuals, progressive-dimension k-means.
        runs.append(("faiss RQ beam", a.beam, faiss.ResidualQuantizer.Train_progressive_dim))
        # The same without progressive-dimension k-means: plain beam training.
        runs.append(("faiss RQ beam (plain k-means)", a.beam, faiss.ResidualQuantizer.Train_default))
    for name, beam, train_type in runs:
        rq = faiss.ResidualQuantizer(d, a.layers, nbits)
        rq.max_beam_size = beam
        rq.train_type = train_type
        rq.cp.niter = a.kmeans_iters
        rq.cp.seed = a.seed
        rq.cp.max_points_per_centroid = max_points

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
                    "name": f"{name} {faiss.__version__}",
                    "threads": faiss.omp_get_max_threads(),
                    "beam": beam,
                    "train_seconds": train_s,
                    "encode_seconds": encode_s,
                    "mse": mse / n,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
