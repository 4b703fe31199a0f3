"""Fixtures of the Hugging Face tests: the package suite's (index, SIDs,
dict trie), the fixture models' HF weights, and the reference constraint —
HF `generate(prefix_allowed_tokens_fn=…)` over a Python dict trie, as
python/hf_fixtures.py made the expected results."""

import importlib.util
import json
import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("sidx_test_support", HERE.parent / "tests/conftest.py")
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

ROOT = support.ROOT
FIXTURES = ROOT / "tests/fixtures/hf"
PAD = 0
index_root, sids, trie = support.index_root, support.sids, support.trie


def load_model(name):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    expected = json.loads((FIXTURES / name / "expected.json").read_text())
    cls = AutoModelForSeq2SeqLM if expected["arch"] == "t5" else AutoModelForCausalLM
    torch.manual_seed(0)
    model = cls.from_pretrained(FIXTURES / name / "hf").eval()
    return model, expected


def trie_fn(trie, vocab, start, max_sid):
    """The reference: a prefix_allowed_tokens_fn over the dict trie (python/hf_fixtures.py's rule)."""
    to_model = vocab.sid_token_ids.tolist()
    sid_of = {v: t for t, v in enumerate(to_model)}
    end = vocab.end_id

    def allowed(_batch, seq):
        gen = []
        for t in seq.tolist()[start:]:
            if t not in sid_of:
                return [end]
            gen.append(sid_of[t])
        a = [to_model[t] for t in sorted(trie.next.get(tuple(gen), ()))]
        if tuple(gen) in trie.ends:
            a.append(end)
        return a or [end]

    return allowed


def generate(model, arch, input_ids, attention_mask, beam, k, max_sid, end, **constraint):
    import torch

    with torch.no_grad():
        return model.generate(
            input_ids=input_ids, attention_mask=attention_mask, num_beams=beam,
            num_return_sequences=k, length_penalty=0.0, early_stopping=False,
            max_new_tokens=max_sid + 1, output_scores=True, return_dict_in_generate=True,
            do_sample=False, eos_token_id=end, pad_token_id=PAD,
            decoder_start_token_id=PAD if arch == "t5" else None, **constraint,
        )


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES
