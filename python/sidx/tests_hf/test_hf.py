"""sidx's LogitsProcessor and prefix_allowed_tokens_fn in HF `generate`:
the same SIDs, in the same order, with bit-identical scores as HF's own
constrained search over a Python dict trie — on the fixture models
(decoder-only GPT-2 and Llama, encoder–decoder T5, an LLM vocabulary with
named SID tokens), single prompts and a left-padded batch of 8 × beam 20 —
and the SIDs python/hf_fixtures.py stored when the fixtures were made."""

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

import sidx
from sidx.hf import SidxLogitsProcessor, prefix_allowed_tokens_fn
from conftest import FIXTURES, PAD, generate, load_model, trie_fn

MODELS = ["gpt2", "llama", "t5", "qwen2-llm"]


def decoded(out, start, vocab):
    """SIDs (token ids) of the returned sequences, with their scores."""
    sid_of = {v: t for t, v in enumerate(vocab.sid_token_ids.tolist())}
    result = []
    for seq in out.sequences.tolist():
        sid = []
        for t in seq[start:]:
            if t not in sid_of:
                break
            sid.append(sid_of[t])
        result.append(sid)
    return result, out.sequences_scores


def run_all(model, arch, ids, mask, start, index, vocab, trie, beam, k):
    max_sid = index.stats()["max_sid_len"]
    end = vocab.end_id
    return {
        "trie": generate(model, arch, ids, mask, beam, k, max_sid, end,
                         prefix_allowed_tokens_fn=trie_fn(trie, vocab, start, max_sid)),
        "sidx-processor": generate(model, arch, ids, mask, beam, k, max_sid, end,
                                   logits_processor=LogitsProcessorList([SidxLogitsProcessor(index, vocab, start)])),
        "sidx-prefix-fn": generate(model, arch, ids, mask, beam, k, max_sid, end,
                                   prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(index, vocab, start)),
    }


@pytest.mark.parametrize("name", MODELS)
def test_single_prompts_match_the_trie_and_the_stored_results(name, index_root, trie):
    model, expected = load_model(name)
    arch = expected["arch"]
    index = sidx.Index(index_root)
    vocab = sidx.Vocab.from_sidecar(FIXTURES / name / "generator.json")
    for case in expected["cases"]:
        ids = torch.tensor([case["prompt"]])
        start = 1 if arch == "t5" else ids.shape[1]
        outs = run_all(model, arch, ids, torch.ones_like(ids), start, index, vocab, trie,
                       expected["beam"], expected["top_k"])
        ref = outs.pop("trie")
        for how, out in outs.items():
            assert torch.equal(out.sequences, ref.sequences), (name, how)
            assert torch.equal(out.sequences_scores, ref.sequences_scores), (name, how)
        got, scores = decoded(ref, start, vocab)
        assert got == [h["sid"] for h in case["constrained"]], name
        np.testing.assert_allclose(scores.numpy(), [h["score"] for h in case["constrained"]], atol=1e-4)
        assert all(index.is_complete(s) for s in got)


def left_padded(prompts):
    n = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (n - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


@pytest.mark.parametrize("name", ["gpt2", "llama", "t5"])
def test_a_padded_batch_of_8_by_beam_20_matches_the_trie(name, index_root, trie):
    model, expected = load_model(name)
    arch = expected["arch"]
    index = sidx.Index(index_root)
    vocab = sidx.Vocab.from_sidecar(FIXTURES / name / "generator.json")
    prompts = [c["prompt"] for c in expected["cases"]]
    # Four more: each history without its oldest item (BOS, then SID SEP …).
    sep = 2
    prompts += [[p[0]] + p[p.index(sep) + 1 :] for p in prompts]
    assert len(prompts) == 8
    if arch == "t5":
        n = max(map(len, prompts))
        ids = torch.tensor([p + [PAD] * (n - len(p)) for p in prompts])
        mask = torch.tensor([[1] * len(p) + [0] * (n - len(p)) for p in prompts])
        start = 1
    else:
        ids, mask = left_padded(prompts)
        start = ids.shape[1]
    outs = run_all(model, arch, ids, mask, start, index, vocab, trie, 20, 10)
    ref = outs.pop("trie")
    for how, out in outs.items():
        assert torch.equal(out.sequences, ref.sequences), (name, how)
        assert torch.equal(out.sequences_scores, ref.sequences_scores), (name, how)
    got, _ = decoded(ref, start, vocab)
    assert len(got) == 80 and all(index.is_complete(s) for s in got)
