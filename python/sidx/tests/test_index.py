"""sidx.Index against a dict trie of the same SIDs, and its edges."""

import shutil

import numpy as np
import pytest

import sidx
from conftest import SIDECAR, run


def test_next_tokens_match_a_dict_trie_for_every_prefix(index_root, trie):
    index = sidx.Index(index_root)
    for prefix, nxt in trie.next.items():
        assert index.next_tokens(list(prefix)).tolist() == sorted(nxt), prefix
        assert index.is_prefix(list(prefix))
        assert index.is_complete(list(prefix)) == (prefix in trie.ends)
    assert index.next_tokens([0, 0, 0, 0, 0]).tolist() == []
    assert not index.is_prefix([5000])


def test_batched_next_tokens_equal_single_calls(index_root, trie):
    index = sidx.Index(index_root)
    prefixes = [list(p) for p in list(trie.next)[:300]] + [[9999 % 65536], []]
    offsets, tokens, complete = index.next_tokens_batch(prefixes)
    assert offsets.dtype == np.int64 and tokens.dtype == np.uint16 and complete.dtype == np.bool_
    assert len(offsets) == len(prefixes) + 1
    for b, p in enumerate(prefixes):
        assert tokens[offsets[b] : offsets[b + 1]].tolist() == index.next_tokens(p).tolist()
        assert bool(complete[b]) == index.is_complete(p)


def test_items_and_sids_round_trip(index_root, sids):
    index = sidx.Index(index_root)
    s = index.stats()
    assert (s["items"], s["sids"], s["codebook_sizes"]) == (len(sids), len(set(map(tuple, sids.values()))), [32, 32, 32])
    for item, sid in sids.items():
        assert index.sid(item) == sid
        assert item in index.items(sid)
    assert index.sid("no such item") is None
    assert index.items([0]) == []
    first = next(iter(sids.values()))
    layers = [layer for layer, _ in index.tokens(first)]
    assert layers == sorted(layers) and layers[0] == 1
    assert [index.token_id(layer, code) for layer, code in index.tokens(first)] == first
    with pytest.raises(ValueError, match="out of range"):
        index.token_id(1, 32)
    with pytest.raises(ValueError, match="16-bit"):
        index.next_tokens([70000])


def test_reload_follows_current(index_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(index_root, root)
    index = sidx.Index(root)
    version = index.version
    assert not index.reload()
    deletes = tmp_path / "deletes.txt"
    deletes.write_text("0\n")
    run("index", "update", "--index", root, "--deletes", deletes)
    assert index.sid("0") is not None  # the old version until reload
    assert index.reload()
    assert index.version == version + 1 and index.sid("0") is None
    pinned = sidx.Index(index.path)  # a version directory: never moves
    assert pinned.version == index.version and not pinned.reload()


def test_bad_paths_and_corrupt_files_raise_sidx_errors(index_root, tmp_path):
    with pytest.raises(sidx.SidxError, match="no such index root"):
        sidx.Index(tmp_path / "missing")
    root = tmp_path / "root"
    shutil.copytree(index_root, root)
    version_dir = sidx.Index(root).path
    trie = version_dir / "trie.bin"
    data = bytearray(trie.read_bytes())
    data[200] ^= 0xFF
    trie.chmod(0o644)
    trie.write_bytes(bytes(data))
    with pytest.raises(sidx.SidxError, match="trie.bin.*checksum"):
        sidx.Index(root)


def test_allowed_is_the_trie_constraint_with_end_of_sid(index_root, trie, sids):
    """Index.allowed, row by row, against the fixture trie's rule (as
    python/hf_fixtures.py constrains HF generate): children, end where a SID
    ends, only end for a finished row or a prefix no SID has."""
    index = sidx.Index(index_root)
    vocab = sidx.Vocab.from_sidecar(SIDECAR)
    off, end = 3, vocab.end_id
    rng = np.random.default_rng(0)
    seqs = [list(s[:k]) for s in list(sids.values())[:200] for k in range(len(s) + 1)]
    rows = []
    for s in seqs:
        rows.append([t + off for t in s])
    rows.append([end])  # finished
    rows.append([0])  # padding
    rows.append([off + 31, off + 31, off + 31])  # unlikely prefix
    rows += [list(rng.integers(0, 133, size=3)) for _ in range(50)]
    width = max(map(len, rows))
    for length in range(width + 1):
        batch = [r for r in rows if len(r) == length]
        if not batch:
            continue
        gen = np.array(batch, dtype=np.int64).reshape(len(batch), length)
        r, c = index.allowed(vocab, gen)
        for b, row in enumerate(batch):
            want = expected(row, trie, off, end)
            assert sorted(c[r == b].tolist()) == sorted(want), row
            assert index.allowed_one(vocab, gen[b]) == c[r == b].tolist()


def expected(row, trie, off, end):
    gen = []
    for t in row:
        if not off <= t < off + 130:
            return [end]
        gen.append(t - off)
    allowed = [off + t for t in trie.next.get(tuple(gen), ())]
    if tuple(gen) in trie.ends:
        allowed.append(end)
    return allowed or [end]


def test_vocab_forms():
    v = sidx.Vocab(end_id=2, offset=3, sid_token_limit=130)
    assert v.sid_token_ids.tolist() == list(range(3, 133))
    listed = sidx.Vocab(end_id=0, sid_token_ids=[5, 4, 9])
    assert listed.sid_token_ids.tolist() == [5, 4, 9]
    with pytest.raises(ValueError, match="two tokens"):
        sidx.Vocab(end_id=4, sid_token_ids=[5, 4])
    with pytest.raises(ValueError, match="offset and sid_token_limit"):
        sidx.Vocab(end_id=2, offset=3)
    with pytest.raises(sidx.SidxError, match="nope.json"):
        sidx.Vocab.from_sidecar("nope.json")
