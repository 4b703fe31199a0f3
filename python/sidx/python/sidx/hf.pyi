from typing import Any, Callable

from . import Index, Vocab

class SidxLogitsProcessor:
    index: Index
    vocab: Vocab
    prompt_len: int
    def __init__(self, index: Index, vocab: Vocab, prompt_len: int) -> None: ...
    def __call__(self, input_ids: Any, scores: Any) -> Any: ...

def prefix_allowed_tokens_fn(index: Index, vocab: Vocab, prompt_len: int) -> Callable[[int, Any], list[int]]: ...
