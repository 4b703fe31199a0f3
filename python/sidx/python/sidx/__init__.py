"""sidx: generative retrieval with semantic IDs, from Python.

The same Rust library the sidx services run, in process:

* :class:`Index` — a memory-mapped, verified SID index version (a root's
  current version, or a version directory); valid-prefix queries, SID ↔ item
  lookups, and :meth:`Index.allowed`, the batched constraint one beam step of
  a whole batch needs in one call.
* :class:`Vocab` — where SID tokens sit in a model's vocabulary (the
  generator sidecar's mapping).
* :class:`Quantizer` — codebooks written by ``sidx quantize``: embeddings to
  codes, zero-copy in, the GIL released while encoding.
* :func:`hourglass` — the hourglass report of a code matrix.
* :mod:`sidx.hf` — a Hugging Face ``LogitsProcessor`` (and a
  ``prefix_allowed_tokens_fn``) constrained by an :class:`Index`.

Token ids are the index's layer-tagged ids: code ``c`` of layer ``l`` is
``sum(codebook_sizes[:l-1]) + c``; layer ``L + 1`` holds disambiguation codes.
"""

import json as _json

from ._sidx import Index, Quantizer, SidxError, Vocab
from ._sidx import hourglass_json as _hourglass_json

__all__ = ["Index", "Quantizer", "SidxError", "Vocab", "hourglass"]
__version__ = "0.1.0"


def hourglass(codes, codebook_sizes, head_share=0.5):
    """The hourglass report of codes ``[N, L]`` (any integer dtype) under a
    layout of ``L`` codebook sizes: per-layer token counts, entropy, Gini and
    the layer-2 head/tail split, as ``sidx quantize`` writes to hourglass.json."""
    import numpy as np

    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [N, L], got shape {codes.shape}")
    return _json.loads(_hourglass_json(codes, list(codebook_sizes), head_share))
