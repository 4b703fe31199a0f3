"""Constrained decoding for Hugging Face ``generate`` with a sidx index.

:class:`SidxLogitsProcessor` masks every beam of a batch in one call into
Rust per step: tokens that no SID continues get ``-inf``, exactly as
``prefix_allowed_tokens_fn`` over a trie of the same SIDs does, at a fraction
of the cost. :func:`prefix_allowed_tokens_fn` is the same constraint for code
that expects that callback.

    index = sidx.Index("idx")                         # a root or a version dir
    vocab = sidx.Vocab.from_sidecar("model/generator.json")
    proc = SidxLogitsProcessor(index, vocab, prompt_len=input_ids.shape[1])
    model.generate(input_ids, num_beams=20, logits_processor=LogitsProcessorList([proc]),
                   eos_token_id=vocab.end_id, ...)

``prompt_len`` is where generation starts in ``input_ids``: the (padded)
prompt length for a decoder-only model, 1 for an encoder–decoder (the
decoder start token). Needs ``torch``; ``transformers`` only for the base
class (duck-typed without it).
"""

import math

import numpy as np

try:  # the base class when transformers is installed; generate() only calls it
    from transformers import LogitsProcessor as _Base
except ImportError:  # pragma: no cover - exercised without transformers
    _Base = object

__all__ = ["SidxLogitsProcessor", "prefix_allowed_tokens_fn"]


class SidxLogitsProcessor(_Base):
    """Sets to ``-inf`` the logits of tokens no SID of ``index`` allows after
    what each row generated since ``prompt_len``; finished rows (a non-SID
    token) may only take ``vocab.end_id``."""

    def __init__(self, index, vocab, prompt_len):
        if prompt_len < 0:
            raise ValueError(f"prompt_len must be >= 0, got {prompt_len}")
        self.index = index
        self.vocab = vocab
        self.prompt_len = int(prompt_len)

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self.prompt_len :]
        rows, cols = self.index.allowed(self.vocab, np.ascontiguousarray(generated.cpu().numpy()))
        mask = torch.full_like(scores, -math.inf)
        mask[torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)] = 0
        return scores + mask


def prefix_allowed_tokens_fn(index, vocab, prompt_len):
    """A ``prefix_allowed_tokens_fn(batch_id, input_ids)`` answering from ``index``."""

    def allowed(_batch_id, input_ids):
        gen = input_ids[prompt_len:]
        gen = gen.cpu().numpy() if hasattr(gen, "cpu") else np.asarray(gen)
        return index.allowed_one(vocab, np.ascontiguousarray(gen, dtype=np.int64))

    return allowed
