"""Python peers of `sidx bench index`: a GENRE-style nested-dict trie and marisa-trie.

Reads the benchmark's SIDs (packed u64 keys: up to four big-endian u16 token
ids, zero-padded) and a sample of them, builds each structure, and prints one
JSON line per structure: build seconds, bytes (dict trie: growth of the
process's resident memory; marisa: its serialized size), ns per beam step
(children of the current prefix, then descend; dict trie only — marisa has no
child listing) and ns per next-token query for a 2-token prefix.
"""

import argparse
import gc
import json
import time

import numpy as np


def tokens(key: int) -> tuple:
    out = [key >> 48 & 0xFFFF]
    for i in (1, 2, 3):
        t = key >> (48 - 16 * i) & 0xFFFF
        if t == 0:
            break
        out.append(t)
    return tuple(out)


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class DictTrie:
    """Nested dicts, as GENRE's `Trie` (genre/trie.py) builds them."""

    def __init__(self, sequences):
        self.trie = {}
        for seq in sequences:
            node = self.trie
            for t in seq:
                node = node.setdefault(t, {})

    def get(self, prefix):
        node = self.trie
        for t in prefix:
            node = node.get(t)
            if node is None:
                return []
        return list(node.keys())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--sample", required=True)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    keys = np.fromfile(a.keys, dtype="<u8").tolist()
    sample = [tokens(k) for k in np.fromfile(a.sample, dtype="<u8").tolist()]
    seqs = [tokens(k) for k in keys]
    del keys
    n = len(seqs)

    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    trie = DictTrie(seqs)
    build = time.perf_counter() - t0
    gc.collect()
    grown = rss_bytes() - before
    steps = 0
    t1 = time.perf_counter()
    for seq in sample:
        node = trie.trie
        for t in seq:
            list(node.keys())
            node = node[t]
            steps += 1
    per_step = (time.perf_counter() - t1) * 1e9 / steps
    t2 = time.perf_counter()
    for seq in sample:
        trie.get(seq[:2])
    per_next = (time.perf_counter() - t2) * 1e9 / len(sample)
    print(json.dumps({"name": f"python dict trie, GENRE-style ({a.label})", "sids": n,
                      "build_seconds": build, "bytes": grown, "ns_per_step": per_step,
                      "ns_per_next_tokens": per_next}))
    del trie
    gc.collect()

    import marisa_trie

    def s(seq):
        return "".join(chr(0x100 + t) for t in seq)

    strs = [s(q) for q in seqs]
    t0 = time.perf_counter()
    mt = marisa_trie.Trie(strs)
    build = time.perf_counter() - t0
    size = len(mt.tobytes())
    probes = [s(q[:2]) for q in sample]
    t2 = time.perf_counter()
    for p in probes:
        {k[2] for k in mt.iterkeys(p) if len(k) > 2}
    per_next = (time.perf_counter() - t2) * 1e9 / len(probes)
    print(json.dumps({"name": f"marisa-trie 1.4.1 ({a.label})", "sids": n,
                      "build_seconds": build, "bytes": size, "ns_per_step": None,
                      "ns_per_next_tokens": per_next}))


if __name__ == "__main__":
    main()
