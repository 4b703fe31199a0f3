"""Builds the Hugging Face parity fixtures: tiny `transformers` models trained
briefly on real users' histories written as the fixture SIDs, exported the way
teams export them (optimum; torch.onnx dynamo), with Hugging Face's own
constrained beam-search results stored beside each export.

    python3 -m venv .venv-hf && .venv-hf/bin/pip install -r python/requirements-hf.txt
    .venv-hf/bin/python python/hf_fixtures.py --out tests/fixtures/hf

Writes, per model, OUT/<name>/ with the optimum export (model.onnx or the
seq2seq files, config.json), the HF weights it came from (hf/, for `sidx
bench hf`), generator.json (the sidx sidecar) and expected.json: for a few users, HF `generate(num_beams=B, num_return_sequences=K,
prefix_allowed_tokens_fn=<the index's trie>, length_penalty=0.0)` — the SIDs in
order with their summed log-probabilities — constrained, and unconstrained
among SID tokens (what sidx's unconstrained mode decodes).

Vocabulary (as python/train_generator.py): PAD 0, BOS 1, SEP 2 (= end of
SID), SID token t at 3 + t. Prompts are `BOS (SID SEP)*` — a decoder-only
model continues them, T5's encoder reads them and its decoder starts from PAD
(T5's decoder_start_token_id, which sidx reads from config.json).

Exporter versions and dead ends: torch 2.15.0, transformers 4.57.6, optimum
2.1.0 + optimum-onnx 0.1.0 (which needs transformers < 4.58: on transformers 5
pin 4.57 in a separate venv for the export). `torch.onnx.export(dynamo=False)`
fails on current HF models (`unordered_map::at`); dynamo=True works for exports
without a cache when input and output names are given. optimum-onnx's CLI
writes decoder-only models as one `model.onnx`; the split + merged layout of
optimum 1.x (`*-split`) comes from its export API and `merge_decoders`.
The LLM-vocabulary model (`qwen2-llm`) has a byte-level BPE tokenizer with the
SID tokens added, and its prompts are HF's tokenization of a text template.

    --variants gpt2-split,llama-split   rebuilds only those fixtures
"""

import argparse
import importlib.metadata
import json
import pathlib
import random
import shutil
import subprocess
import sys

import numpy as np
import torch

PAD, BOS, SEP, OFFSET = 0, 1, 2, 3
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
from train_generator import read_sids  # noqa: E402  (item id -> layer-tagged ids, layout, count)


def histories(path, sids, max_items):
    """Users' item sequences (known items only, at least two)."""
    out = []
    for line in open(path):
        parts = line.split()
        items = [i for i in parts[1:] if i in sids][-max_items:]
        if len(items) >= 2:
            out.append(items)
    return out


class Trie:
    """The index's constraint: children of a prefix, SEP where a SID ends."""

    def __init__(self, sids):
        self.next, self.ends = {}, set()
        for s in sids.values():
            for k in range(len(s)):
                self.next.setdefault(tuple(s[:k]), set()).add(s[k])
            self.ends.add(tuple(s))

    def allowed(self, prefix):
        a = [OFFSET + t for t in sorted(self.next.get(tuple(prefix), ()))]
        if tuple(prefix) in self.ends:
            a.append(SEP)
        return a


class Vocab:
    """How SID tokens and the prompt sit in a model's vocabulary: sidx's
    own layout (special tokens, then SID token t at OFFSET + t), or an
    LLM-style one (`llm=True`): a byte-level BPE text vocabulary (as GPT-2's
    and Qwen2's, trained here on a few sentences) with the SID tokens added
    in shuffled order, named `<a_12>` (layer letter, code), no BOS, and a
    text prompt around the history — tokenized by Hugging Face's tokenizer,
    which sidx must reproduce from the template in its sidecar."""

    TEXT = 300
    TEMPLATE = "The user bought {history}. Next:"
    SEPARATOR = ", "
    CORPUS = [
        "The user bought a microscope, a pipette and gloves. Next: a centrifuge.",
        "Next: what the user buys after these items, in order.",
        "The user bought lab supplies; the next purchase follows.",
    ]

    def __init__(self, sid_tokens, sizes, llm=False, seed=0):
        self.llm, self.sizes, self.sid_tokens = llm, sizes, sid_tokens
        if llm:
            from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            tok.train_from_iterator(self.CORPUS * 20, trainers.BpeTrainer(
                vocab_size=self.TEXT, special_tokens=["<pad>", "<eos>"], show_progress=False,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
            text = tok.get_vocab_size()
            ids = list(range(text, text + sid_tokens))
            random.Random(seed).shuffle(ids)
            sid_of = {v: t for t, v in enumerate(ids)}
            # Added in id order, so token t gets id ids[t].
            tok.add_tokens([AddedToken(self.name(sid_of[v]), normalized=False)
                            for v in range(text, text + sid_tokens)])
            assert all(tok.token_to_id(self.name(t)) == v for t, v in enumerate(ids))
            from transformers import PreTrainedTokenizerFast

            self.tokenizer, self.hf = tok, PreTrainedTokenizerFast(tokenizer_object=tok)
            self.ids, self.eos, self.size = ids, 1, text + sid_tokens
            # The separator after a generated SID is end-of-SID; between
            # history items it is the template's text separator.
            self.sep = self.eos
        else:
            self.ids = [OFFSET + t for t in range(sid_tokens)]
            self.eos, self.sep, self.size = SEP, SEP, OFFSET + sid_tokens
        self.sid_of = {v: t for t, v in enumerate(self.ids)}

    def prompt(self, items, sids):
        if not self.llm:
            return decoder_prompt(items, sids)
        history = self.SEPARATOR.join("".join(self.name(t) for t in sids[i]) for i in items)
        return self.hf(self.TEMPLATE.format(history=history), add_special_tokens=False)["input_ids"]

    def target(self, item, sids):
        return [self.ids[t] for t in sids[item]] + [self.eos]

    def name(self, t):
        offsets = [sum(self.sizes[:l]) for l in range(len(self.sizes) + 1)]
        layer = next((l for l in range(len(self.sizes)) if t < offsets[l + 1]), len(self.sizes))
        return f"<{'abcdefgh'[layer]}_{t - offsets[layer]}>"


def decoder_prompt(items, sids):
    p = [BOS]
    for i in items:
        p += [OFFSET + t for t in sids[i]] + [SEP]
    return p


def encoder_prompt(items, sids):
    """T5's encoder reads the same `BOS (SID SEP)*` a decoder-only model is prompted with."""
    return decoder_prompt(items, sids)


def build(arch, vocab):
    import transformers as tf

    small = dict(vocab_size=vocab)
    if arch == "gpt2":
        cfg = tf.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=256, bos_token_id=BOS,
                            eos_token_id=SEP, pad_token_id=PAD, **small)
        return tf.GPT2LMHeadModel(cfg)
    if arch == "llama":
        cfg = tf.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=256, bos_token_id=BOS, eos_token_id=SEP,
                             pad_token_id=PAD, **small)
        return tf.LlamaForCausalLM(cfg)
    if arch == "qwen2":
        cfg = tf.Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=256, bos_token_id=BOS, eos_token_id=SEP,
                             pad_token_id=PAD, **small)
        return tf.Qwen2ForCausalLM(cfg)
    if arch == "t5":
        cfg = tf.T5Config(d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4,
                          decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=SEP,
                          **small)
        return tf.T5ForConditionalGeneration(cfg)
    raise ValueError(arch)


def train(model, arch, users, sids, steps, seed, vocab):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = rng.sample(users, 32)
        if arch == "t5":
            src = [encoder_prompt(u[:-1], sids) for u in batch]
            tgt = [[OFFSET + t for t in sids[u[-1]]] + [SEP] for u in batch]
            s, t = max(map(len, src)), max(map(len, tgt))
            ids = torch.tensor([x + [PAD] * (s - len(x)) for x in src])
            mask = (torch.arange(s)[None] < torch.tensor([len(x) for x in src])[:, None]).long()
            labels = torch.tensor([y + [-100] * (t - len(y)) for y in tgt])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        else:
            seqs = [vocab.prompt(u[:-1], sids) + vocab.target(u[-1], sids) for u in batch]
            n = max(map(len, seqs))
            ids = torch.tensor([x + [PAD] * (n - len(x)) for x in seqs])
            mask = (torch.arange(n)[None] < torch.tensor([len(x) for x in seqs])[:, None]).long()
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return loss.detach()


@torch.no_grad()
def hf_topk(model, arch, trie, prompt, beam, k, max_sid, constrained, vocab):
    """HF constrained beam search; SIDs (layer-tagged ids) best first with scores."""
    start = 1 if arch == "t5" else len(prompt)
    eos = vocab.eos

    def allowed(_batch, seq):
        gen = []
        for t in seq.tolist()[start:]:
            if t not in vocab.sid_of:  # a finished hypothesis (end-of-SID, padding)
                return [eos]
            gen.append(vocab.sid_of[t])
        if constrained:
            a = [vocab.ids[t - OFFSET] for t in trie.allowed(gen) if t != SEP]
            if tuple(gen) in trie.ends:
                a.append(eos)
            return a or [eos]
        if len(gen) >= max_sid:
            return [eos]
        return list(vocab.ids) + ([eos] if gen else [])

    ids = torch.tensor([prompt])
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=beam,
        num_return_sequences=k, prefix_allowed_tokens_fn=allowed, length_penalty=0.0,
        early_stopping=False, max_new_tokens=max_sid + 1, output_scores=True,
        return_dict_in_generate=True, do_sample=False, eos_token_id=eos, pad_token_id=PAD,
        decoder_start_token_id=PAD if arch == "t5" else None,
    )
    result = []
    for seq, score in zip(out.sequences.tolist(), out.sequences_scores.tolist()):
        gen = seq[start:]
        sid = []
        for t in gen:
            if t == eos or t == PAD:
                break
            sid.append(vocab.sid_of[t])
        result.append({"sid": sid, "score": score})
    return result


def export(model, arch, out, dtype):
    """optimum-cli export of the saved model into `out`.

    fp16: optimum's `--dtype fp16` on CPU writes a graph ONNX Runtime cannot
    load (LayerNormalization bound to float and float16), so the fp32 export
    is converted with onnxruntime's own float16 converter — caches, logits
    and weights in fp16, as optimum's CUDA fp16 export has them."""
    src = out / "hf"
    model.save_pretrained(src)  # kept: `sidx bench hf` runs HF on these weights
    task = "text2text-generation-with-past" if arch == "t5" else "text-generation-with-past"
    if dtype == "nocache":
        task = "text-generation"
    cmd = [sys.executable, "-m", "optimum.commands.optimum_cli", "export", "onnx", "--model",
           str(src), "--task", task, str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"optimum export of {arch} failed:\n{r.stderr[-3000:]}")
    if dtype == "nocache":
        shutil.rmtree(src)  # the weights are the cached fixture's
    if dtype == "bf16":
        shutil.rmtree(src)
        bf16_io(out / "model.onnx")
    if dtype == "fp16":
        shutil.rmtree(src)
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        for f in out.glob("*.onnx"):
            m = convert_float_to_float16(onnx.load(str(f)), keep_io_types=False)
            onnx.save(m, str(f))


def bf16_io(path):
    """The fp32 export with a bfloat16 contract: caches in and out and the
    logits in bf16, cast at the graph's edge. ONNX Runtime's CPU provider has
    no bf16 MatMul, so a true bf16 export runs only on a GPU; this one has
    the same inputs and outputs and runs anywhere."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(path))
    g = m.graph

    def rename(old, new):
        for node in g.node:
            for i, x in enumerate(node.input):
                if x == old:
                    node.input[i] = new
            for i, x in enumerate(node.output):
                if x == old:
                    node.output[i] = new

    first, last = [], []
    for inp in g.input:
        if inp.name.startswith("past_key_values."):
            rename(inp.name, inp.name + ".f32")
            inp.type.tensor_type.elem_type = TensorProto.BFLOAT16
            first.append(helper.make_node("Cast", [inp.name], [inp.name + ".f32"],
                                          to=TensorProto.FLOAT))
    for out in g.output:
        if out.name.startswith("present.") or out.name == "logits":
            rename(out.name, out.name + ".f32")
            out.type.tensor_type.elem_type = TensorProto.BFLOAT16
            last.append(helper.make_node("Cast", [out.name + ".f32"], [out.name],
                                         to=TensorProto.BFLOAT16))
    nodes = first + list(g.node) + last
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def export_split(model, out):
    """The decoder-only layout optimum 1.x wrote (and many Hub exports still
    have): `decoder_model.onnx` (no past in, present out) for the first step,
    `decoder_with_past_model.onnx` for the rest, and optimum's
    `merge_decoders` of the two as `decoder_model_merged.onnx` (its
    `use_cache_branch` input picks the branch). optimum-onnx 0.1.0's CLI
    writes only the single with-past `model.onnx`; its export API still
    builds both graphs from the same ONNX config."""
    from optimum.exporters.onnx import export as onnx_export
    from optimum.exporters.tasks import TasksManager
    from optimum.onnx import merge_decoders

    config = TasksManager.get_exporter_config_constructor(
        "onnx", model=model, task="text-generation-with-past", library_name="transformers")
    for file, past_in in (("decoder_model.onnx", False), ("decoder_with_past_model.onnx", True)):
        onnx_export(model, config(model.config, task="text-generation", use_past=True,
                                  use_past_in_inputs=past_in), out / file)
    merge_decoders(out / "decoder_model.onnx", out / "decoder_with_past_model.onnx",
                   save_path=out / "decoder_model_merged.onnx")
    model.config.save_pretrained(out)


def export_dynamo(model, out):
    """`torch.onnx.export(dynamo=True)` without a cache, names given (without
    them the output is called `linear` and shapes are static); no
    position_ids, as such exports come out."""

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    ids = torch.ones((2, 5), dtype=torch.long)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=255)
    torch.onnx.export(
        Logits(model), (ids, torch.ones_like(ids)), str(out / "model.onnx"), dynamo=True,
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        external_data=False,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sids", default=str(ROOT / "tests/fixtures/generator/sids.tsv"))
    ap.add_argument("--sequences", default=str(ROOT / "../shared/data/amazon_scientific/sequences.txt"))
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/hf"))
    ap.add_argument("--archs", default="gpt2,llama,qwen2,t5,qwen2-llm")
    ap.add_argument("--variants", default="",
                    help="only these fixture names (e.g. gpt2-split); default: all of --archs")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=10)
    args = ap.parse_args()
    import transformers

    sids, sizes, sid_tokens = read_sids(args.sids)
    users = histories(args.sequences, sids, 8)
    trie = Trie(sids)
    max_sid = max(map(len, sids.values()))
    probe_users = users[-args.users:]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name_arch in args.archs.split(","):
        arch, llm = name_arch.removesuffix("-llm"), name_arch.endswith("-llm")
        vocab = Vocab(sid_tokens, sizes, llm=llm)
        torch.manual_seed(0)
        model = build(arch, vocab.size)
        loss = float(train(model, arch, users[: -args.users], sids, args.steps, 0, vocab))
        cases = []
        for u in probe_users:
            history = u[:-1]
            prompt = encoder_prompt(history, sids) if arch == "t5" else vocab.prompt(history, sids)
            case = {"history": history, "prompt": prompt}
            for constrained in (True, False):
                key = "constrained" if constrained else "unconstrained"
                case[key] = hf_topk(model, arch, trie, prompt, args.beam, args.top_k, max_sid,
                                    constrained, vocab)
            cases.append(case)
        dtypes = {"gpt2": ["fp32", "fp16", "bf16", "dynamo", "split"], "llama": ["fp32", "nocache", "split"],
                  "qwen2": ["fp32", "nocache"]}.get(name_arch, ["fp32"])
        for dtype in dtypes:
            name = name_arch if dtype == "fp32" else f"{arch}-{dtype}"
            if args.variants and name not in args.variants.split(","):
                continue
            d = out / name
            if d.exists():
                shutil.rmtree(d)
            d.mkdir()
            if dtype == "dynamo":
                export_dynamo(model, d)
            elif dtype == "split":
                export_split(model, d)
            else:
                export(model, arch, d, dtype)
            sidecar = {
                "format": "sidx-generator", "version": 1, "vocab_size": vocab.size, "pad_id": PAD,
                "bos_id": BOS, "sep_id": SEP, "end_of_sid_id": SEP, "sid_token_offset": OFFSET,
                "codebook_sizes": sizes, "sid_token_limit": sid_tokens, "max_positions": 256,
                "max_history_items": 8,
            }
            if llm:
                # Version 2: SID tokens named through tokenizer.json, no BOS,
                # a text prompt around the history.
                sidecar = {
                    "format": "sidx-generator", "version": 2, "vocab_size": vocab.size,
                    "pad_id": PAD, "sep_id": vocab.sep, "end_of_sid_id": vocab.eos,
                    "sid_token_names": {"tokenizer": "tokenizer.json", "template": "<{letter}_{code}>"},
                    "prompt_template": {"tokenizer": "tokenizer.json", "text": Vocab.TEMPLATE,
                                        "separator": Vocab.SEPARATOR},
                    "codebook_sizes": sizes, "sid_token_limit": sid_tokens, "max_positions": 256,
                    "max_history_items": 8,
                }
                vocab.tokenizer.save(str(d / "tokenizer.json"))
            (d / "generator.json").write_text(json.dumps(sidecar, indent=2) + "\n")
            (d / "expected.json").write_text(json.dumps({
                "arch": arch, "dtype": dtype, "beam": args.beam, "top_k": args.top_k,
                "final_train_loss": loss, "torch": torch.__version__,
                "transformers": transformers.__version__,
                "optimum": importlib.metadata.version("optimum"),
                "optimum_onnx": importlib.metadata.version("optimum-onnx"), "cases": cases,
            }, indent=1) + "\n")
            print(name, sorted(p.name for p in d.iterdir()), f"loss {loss:.3f}")


if __name__ == "__main__":
    main()
