"""The Hugging Face side of `sidx bench hf`: HF constrained beam search
(`generate(num_beams=B, prefix_allowed_tokens_fn=trie, length_penalty=0)`) on
the weights behind each export in tests/fixtures/hf (their hf/ folders), for
one batch of users, with and without the KV cache. Prints one JSON object per
(model, cache) line: the prompts used and the median milliseconds per batch.

    .venv-hf/bin/python benches/hf_generate.py --names gpt2,t5 --batch 8 --threads 1
"""

import argparse
import json
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
import hf_fixtures as fx  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=str(ROOT / "tests/fixtures/hf"))
    ap.add_argument("--names", default="gpt2,llama,qwen2,t5")
    ap.add_argument("--sids", default=str(ROOT / "tests/fixtures/generator/sids.tsv"))
    ap.add_argument("--sequences", default=str(ROOT / "../shared/data/amazon_scientific/sequences.txt"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers as tf

    sids, _, _ = fx.read_sids(args.sids)
    trie = fx.Trie(sids)
    max_sid = max(map(len, sids.values()))
    users = fx.histories(args.sequences, sids, 8)[-args.batch:]
    prompts = [fx.decoder_prompt(u[:-1], sids) for u in users]
    for name in args.names.split(","):
        hf = pathlib.Path(args.fixtures) / name / "hf"
        config = tf.AutoConfig.from_pretrained(hf)
        seq2seq = config.model_type == "t5"
        cls = tf.AutoModelForSeq2SeqLM if seq2seq else tf.AutoModelForCausalLM
        model = cls.from_pretrained(hf).eval()
        width = max(map(len, prompts))
        if seq2seq:  # right padding for the encoder
            ids = [p + [fx.PAD] * (width - len(p)) for p in prompts]
            mask = [[1] * len(p) + [0] * (width - len(p)) for p in prompts]
            start = 1
        else:  # left padding for a decoder
            ids = [[fx.PAD] * (width - len(p)) + p for p in prompts]
            mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
            start = width

        def allowed(_batch, seq):
            gen = [t - fx.OFFSET for t in seq.tolist()[start:]]
            return trie.allowed(gen) or [fx.SEP]

        ids, mask = torch.tensor(ids), torch.tensor(mask)
        for cached in (True, False):
            def run():
                with torch.no_grad():
                    return model.generate(
                        input_ids=ids, attention_mask=mask, num_beams=args.beam,
                        num_return_sequences=args.top_k, prefix_allowed_tokens_fn=allowed,
                        length_penalty=0.0, early_stopping=False, max_new_tokens=max_sid + 1,
                        do_sample=False, eos_token_id=fx.SEP, pad_token_id=fx.PAD,
                        use_cache=cached,
                        decoder_start_token_id=fx.PAD if seq2seq else None,
                    )

            run()
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                run()
                times.append((time.perf_counter() - t0) * 1e3)
            times.sort()
            print(json.dumps({"name": name, "cached": cached, "ms": times[len(times) // 2],
                              "prompts": prompts}), flush=True)


if __name__ == "__main__":
    main()
