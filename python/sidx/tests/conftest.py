"""Fixtures of the package's tests: indexes built by the sidx binary from the
repository's fixture SIDs, and a dict trie of the same SIDs to check against."""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
SIDS = ROOT / "tests/fixtures/generator/sids.tsv"
SIDECAR = ROOT / "tests/fixtures/hf/gpt2/generator.json"


def sidx_bin():
    return os.environ.get("SIDX_BIN", str(ROOT / "target/release/sidx"))


def run(*args):
    """Runs the sidx binary; returns stdout, failing the test with stderr."""
    r = subprocess.run([sidx_bin(), "--log", "warn", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def read_sids(path=SIDS):
    """item id -> SID as layer-tagged token ids (the header's layout)."""
    import json

    lines = path.read_text().splitlines()
    sizes = json.loads(lines[0][len("#sidx ") :])["codebook_sizes"]
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    out = {}
    for line in lines[1:]:
        item, tokens = line.split("\t")
        sid = []
        for tok in tokens.split():
            layer, code = map(int, tok.split(":"))
            sid.append(offsets[layer - 1] + code)
        out[item] = sid
    return out


class DictTrie:
    """The GENRE/TIGER-style Python trie: prefix tuple -> next tokens, and complete SIDs."""

    def __init__(self, sids):
        self.next, self.ends = {}, set()
        for s in sids.values():
            for k in range(len(s)):
                self.next.setdefault(tuple(s[:k]), set()).add(s[k])
            self.ends.add(tuple(s))


@pytest.fixture(scope="session")
def index_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx") / "root"
    run("index", "build", "--sids", SIDS, "--out", root)
    return root


@pytest.fixture(scope="session")
def sids():
    return read_sids()


@pytest.fixture(scope="session")
def trie(sids):
    return DictTrie(sids)
