"""sidx's constraint inside Hugging Face `generate` against the Python dict
trie teams use today (GENRE/TIGER style `prefix_allowed_tokens_fn`), in the
same run: milliseconds per `generate` call (batch × beam on a fixture model),
microseconds per constrained beam step (the constraint alone, all beams of a
batch), and the memory each holds — on the fixture SIDs and on a synthetic
catalog of --catalog SIDs. Prints Markdown tables.

    scripts/build-python.sh /work/hfvenv   # the wheel into a venv with torch
    /work/hfvenv/bin/python benches/hf_constraint.py --catalog 1000000
"""

import argparse
import gc
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import torch
from transformers import LogitsProcessorList
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

import sidx
from sidx.hf import SidxLogitsProcessor, prefix_allowed_tokens_fn

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python/sidx/tests_hf"))
import conftest as hf  # noqa: E402  (load_model, trie_fn, generate, the support module)

support = hf.support


def build_index(sids_tsv, out):
    subprocess.run([str(ROOT / "target/release/sidx"), "--log", "warn", "index", "build",
                    "--sids", str(sids_tsv), "--out", str(out)], check=True, capture_output=True)
    return sidx.Index(out)


def trie_memory(sids):
    """Bytes a dict trie of `sids` holds (tracemalloc), and the trie."""
    gc.collect()
    tracemalloc.start()
    trie = support.DictTrie(sids)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size, trie


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def generate_table(args, index, trie):
    model, expected = hf.load_model(args.model)
    vocab = sidx.Vocab.from_sidecar(hf.FIXTURES / args.model / "generator.json")
    prompts = [c["prompt"] for c in expected["cases"]]
    prompts = (prompts * args.batch)[: args.batch]
    n = max(map(len, prompts))
    ids = torch.tensor([[hf.PAD] * (n - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts])
    start = 1 if expected["arch"] == "t5" else n
    max_sid = index.stats()["max_sid_len"]
    end = vocab.end_id
    ways = {
        "Python dict trie, prefix_allowed_tokens_fn": dict(
            prefix_allowed_tokens_fn=hf.trie_fn(trie, vocab, start, max_sid)),
        "sidx, prefix_allowed_tokens_fn": dict(
            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(index, vocab, start)),
        "sidx, SidxLogitsProcessor": dict(
            logits_processor=LogitsProcessorList([SidxLogitsProcessor(index, vocab, start)])),
    }
    rows = []
    results = {}
    for name, kw in ways.items():
        run = lambda: hf.generate(model, expected["arch"], ids, mask, args.beam, 10, max_sid, end, **kw)  # noqa: E731
        results[name] = run()
        rows.append((name, median_ms(run, args.reps)))
    ref = results["Python dict trie, prefix_allowed_tokens_fn"]
    same = all(torch.equal(r.sequences, ref.sequences) and torch.equal(r.sequences_scores, ref.sequences_scores)
               for r in results.values())
    print(f"\n### `generate` on the {args.model} fixture: batch {args.batch} × beam {args.beam}, "
          f"{torch.get_num_threads()} torch threads; identical sequences and scores: {same}\n")
    print("| constraint | ms per generate call | vs dict trie |")
    print("|---|---:|---:|")
    base = rows[0][1]
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {base / ms:.2f}× |")
    return same


def step_table(label, index, trie, sids, args):
    """The constraint alone: one beam step of batch × beam rows at each depth
    (sidx's training vocabulary: PAD, BOS, SEP = end of SID, SID token t at 3 + t)."""
    vocab = sidx.Vocab(end_id=2, offset=3, sid_token_limit=max(max(s) for s in sids.values()) + 1)
    to_model = vocab.sid_token_ids.tolist()
    vocab_size = 3 + len(to_model)
    rng = np.random.default_rng(0)
    all_sids = list(sids.values())
    rows_n = args.batch * args.beam
    print(f"\n### One constrained beam step, {rows_n} rows (batch {args.batch} × beam {args.beam}), {label}\n")
    print("| depth | Python dict trie via HF PrefixConstrainedLogitsProcessor, µs | sidx SidxLogitsProcessor, µs | speed-up |")
    print("|---:|---:|---:|---:|")
    for depth in range(0, 4):
        deep = [s for s in all_sids if len(s) >= depth]
        picks = [deep[i] for i in rng.integers(0, len(deep), rows_n)]
        gen = torch.tensor([[to_model[t] for t in s[:depth]] for s in picks], dtype=torch.long).reshape(rows_n, depth)
        scores = torch.zeros(rows_n, vocab_size)
        ref = PrefixConstrainedLogitsProcessor(hf.trie_fn(trie, vocab, 0, 8), args.beam)
        ours = SidxLogitsProcessor(index, vocab, 0)
        assert torch.equal(ref(gen, scores), ours(gen, scores))
        a = median_ms(lambda: ref(gen, scores), args.step_reps) * 1e3
        b = median_ms(lambda: ours(gen, scores), args.step_reps) * 1e3
        print(f"| {depth} | {a:.0f} | {b:.0f} | {a / b:.1f}× |")


def memory_row(label, index, trie_bytes, build_s, n):
    s = index.stats()
    print(f"| {label} | {n:,} | {trie_bytes / n:.0f} | {build_s:.1f} | {s['bytes'] / n:.1f} |")


def synthetic(n, tmp):
    """n distinct SIDs of 3 × 256 codes (+ a disambiguation code where shared)."""
    rng = np.random.default_rng(1)
    z = rng.zipf(1.3, size=(n, 3)) % 256
    codes = (z + rng.integers(0, 256, size=(n, 3)) * (rng.random((n, 3)) < 0.7)) % 256
    path = tmp / "synthetic.tsv"
    seen = {}
    with open(path, "w") as f:
        f.write('#sidx {"format":"sidx-sids","version":1,"codebook_sizes":[256,256,256],"collisions":"disambiguate"}\n')
        for i, (a, b, c) in enumerate(codes.tolist()):
            d = seen.get((a, b, c), 0)
            seen[(a, b, c)] = d + 1
            f.write(f"{i}\t1:{a} 2:{b} 3:{c} 4:{d}\n")
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--step-reps", type=int, default=50)
    ap.add_argument("--catalog", type=int, default=1_000_000, help="synthetic SIDs (0 = skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = pathlib.Path(tempfile.mkdtemp())
    sids = support.read_sids()
    t0 = time.perf_counter()
    trie_bytes, trie = trie_memory(sids)
    trie_s = time.perf_counter() - t0
    index = build_index(support.SIDS, tmp / "fixture")
    same = generate_table(args, index, trie)
    step_table(f"fixture SIDs ({len(sids):,})", index, trie, sids, args)
    mem = [("fixture SIDs", index, trie_bytes, trie_s, len(sids))]
    if args.catalog:
        path = synthetic(args.catalog, tmp)
        big = support.read_sids(path)
        t0 = time.perf_counter()
        big_bytes, big_trie = trie_memory(big)
        big_s = time.perf_counter() - t0
        big_index = build_index(path, tmp / "synthetic")
        step_table(f"synthetic {len(big):,} SIDs, 3 × 256 + disambiguation", big_index, big_trie, big, args)
        mem.append(("synthetic 3 × 256", big_index, big_bytes, big_s, len(big)))
    print("\n### Memory\n")
    print("| SIDs | count | Python dict trie, bytes per SID (tracemalloc) | trie build s | sidx index, bytes per SID (files, mapped) |")
    print("|---|---:|---:|---:|---:|")
    for row in mem:
        memory_row(*row)
    if not same:
        sys.exit("the constraints disagreed")


if __name__ == "__main__":
    main()
