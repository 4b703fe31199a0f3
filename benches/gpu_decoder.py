"""A Qwen2-0.5B-shaped generator with random weights, for the GPU check
(scripts/gpu-check.sh): built with PyTorch where it runs (the GPU machine has
no network, so no weights travel), exported with its KV cache in sidx's
decoder contract, and timed in Hugging Face `generate` as the peer.

    python3 benches/gpu_decoder.py export --out DIR [--dtype fp16,fp32] [--small]
    python3 benches/gpu_decoder.py hf --model DIR --index IDX --prompts P.json \\
        --configs 1x10,8x20,8x70,32x20 [--dtype fp16] [--device cuda]

`export` writes DIR/hf (transformers' Qwen2ForCausalLM, save_pretrained),
DIR/<dtype>/model.onnx (+ external weights) and DIR/<dtype>/generator.json.
Shape (Qwen2-0.5B): 24 layers, 896 wide, 14 heads / 2 KV heads, MLP 4864,
RoPE θ 1e6, tied embeddings; vocabulary = 151,646 base tokens + a 3 × 2048
SID layout + 256 disambiguation tokens (SID token t at 151,646 + t; PAD 0,
BOS 1, SEP 2 = end of SID, as python/train_generator.py). `--small` shrinks
it (2 layers, 64 wide, 1,000 base tokens) to dry-run the script on a CPU.

The ONNX graph is not traced through transformers' cache classes (KV-cache
exports through them failed in torch.onnx in both exporters, TOOLING.md):
`Decoder` below re-states Qwen2's forward pass over the HF model's own
modules with the cache as plain tensors, is checked against HF's logits
before export, and is exported with torch.onnx (TorchScript). Logits come
out for the last position only ([batch, 1, vocab]).

`hf` times HF `generate(num_beams, num_return_sequences=min(beam, 10),
prefix_allowed_tokens_fn=<the sidx index>, length_penalty=0)` on the same
prompts (written by `sidx bench generate --prompts-out`) and prints a JSON
line per configuration: median ms per batch, and invalid SIDs returned.
"""

import argparse
import json
import math
import pathlib
import statistics
import sys
import time

import torch
from torch import nn

PAD, BOS, SEP = 0, 1, 2


def shape(args):
    if args.small:
        return dict(layers=2, width=64, heads=4, kv_heads=2, mlp=128, base=1000)
    return dict(layers=24, width=896, heads=14, kv_heads=2, mlp=4864, base=151646)


def hf_model(args, layout):
    import transformers as tf

    s = shape(args)
    vocab = s["base"] + sum(layout) + args.disambiguation
    config = tf.Qwen2Config(
        vocab_size=vocab, hidden_size=s["width"], intermediate_size=s["mlp"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"], max_position_embeddings=4096, rope_theta=1e6,
        tie_word_embeddings=True, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=SEP)
    torch.manual_seed(args.seed)
    return tf.Qwen2ForCausalLM(config).eval(), s


class Decoder(nn.Module):
    """Qwen2's forward pass over `hf`'s modules, the cache as tensors:
    (input_ids, attention_mask, position_ids, past.0.key, past.0.value, ...)
    → (last-position logits, present.0.key, present.0.value, ...)."""

    def __init__(self, hf):
        super().__init__()
        c = hf.config
        self.m, self.head = hf.model, hf.lm_head
        self.heads, self.kv = c.num_attention_heads, c.num_key_value_heads
        self.hd = c.hidden_size // c.num_attention_heads
        self.eps = c.rms_norm_eps
        inv = 1.0 / (c.rope_theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        self.register_buffer("inv_freq", inv, persistent=False)

    def norm(self, x, w):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return w.weight * h.to(x.dtype)

    @staticmethod
    def rotate(x, cos, sin):
        a, b = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-b, a), dim=-1) * sin

    def forward(self, input_ids, attention_mask, position_ids, *past):
        x = self.m.embed_tokens(input_ids)
        dt = x.dtype
        b, s = input_ids.shape[0], input_ids.shape[1]
        total = attention_mask.shape[1]
        f = position_ids[..., None].float() * self.inv_freq
        emb = torch.cat((f, f), dim=-1)
        cos, sin = emb.cos()[:, None].to(dt), emb.sin()[:, None].to(dt)
        q_pos = torch.arange(s, device=x.device) + (total - s)
        k_pos = torch.arange(total, device=x.device)
        allowed = (k_pos[None, :] <= q_pos[:, None])[None, None] & (attention_mask[:, None, None, :] > 0)
        bias = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
        rep = self.heads // self.kv
        present = []
        for i, layer in enumerate(self.m.layers):
            a = layer.self_attn
            h = self.norm(x, layer.input_layernorm)
            q = a.q_proj(h).view(b, s, self.heads, self.hd).transpose(1, 2)
            k = a.k_proj(h).view(b, s, self.kv, self.hd).transpose(1, 2)
            v = a.v_proj(h).view(b, s, self.kv, self.hd).transpose(1, 2)
            q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
            k = torch.cat((past[2 * i], k), dim=2)
            v = torch.cat((past[2 * i + 1], v), dim=2)
            present += [k, v]
            t = k.shape[2]
            kr = k[:, :, None].expand(b, self.kv, rep, t, self.hd).reshape(b, self.heads, t, self.hd)
            vr = v[:, :, None].expand(b, self.kv, rep, t, self.hd).reshape(b, self.heads, t, self.hd)
            att = (q @ kr.transpose(-1, -2)).float() / math.sqrt(self.hd) + bias
            att = att.softmax(-1).to(dt)
            o = (att @ vr).transpose(1, 2).reshape(b, s, self.heads * self.hd)
            x = x + a.o_proj(o)
            h = self.norm(x, layer.post_attention_layernorm)
            mlp = layer.mlp
            x = x + mlp.down_proj(nn.functional.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
        x = self.norm(x[:, -1:], self.m.norm)
        return (self.head(x), *present)


def export(args):
    layout = [int(x) for x in args.layout.split(",")]
    hf, s = hf_model(args, layout)
    out = pathlib.Path(args.out)
    (out / "hf").mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out / "hf")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vocab = hf.config.vocab_size
    hd = s["width"] // s["heads"]
    # fp32 first: the fp16 conversion below is in place.
    for dtype in sorted(args.dtype.split(","), key=lambda d: d != "fp32"):
        dt = {"fp16": torch.float16, "fp32": torch.float32}[dtype]
        if dt == torch.float16 and device == "cpu":
            print("fp16 export skipped on CPU (no GPU here)", flush=True)
            continue
        model = hf.to(device=device, dtype=dt)
        dec = Decoder(model).to(device)
        # The re-stated forward pass against HF's own, on a prompt with a cache.
        ids = torch.tensor([[BOS, s["base"] + 5, SEP, s["base"] + 7, SEP]], device=device)
        with torch.no_grad():
            want = model(input_ids=ids).logits[:, -1].float()
            none = [torch.zeros(1, s["kv_heads"], 0, hd, device=device, dtype=dt)
                    for _ in range(2 * s["layers"])]
            mask = torch.ones_like(ids)
            pos = torch.arange(ids.shape[1], device=device)[None]
            got_all = dec(ids, mask, pos, *none)[0][:, -1].float()
            first = dec(ids[:, :-1], mask[:, :-1], pos[:, :-1], *none)
            got_step = dec(ids[:, -1:], mask, pos[:, -1:], *first[1:])[0][:, -1].float()
        err = max((got_all - want).abs().max().item(), (got_step - want).abs().max().item())
        limit = 5e-2 if dt == torch.float16 else 1e-3
        print(f"{dtype}: re-stated forward vs HF: max |logit difference| {err:.2e}", flush=True)
        if err > limit:
            sys.exit(f"{dtype}: the exported forward pass disagrees with HF ({err} > {limit})")
        d = out / dtype
        d.mkdir(exist_ok=True)
        past_names, present_names = [], []
        dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
               "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}
        for i in range(s["layers"]):
            for kind in ("key", "value"):
                past_names.append(f"past_key_values.{i}.{kind}")
                present_names.append(f"present.{i}.{kind}")
                dyn[past_names[-1]] = {0: "batch", 2: "past"}
                dyn[present_names[-1]] = {0: "batch", 2: "total"}
        past = [torch.zeros(1, s["kv_heads"], 2, hd, device=device, dtype=dt)
                for _ in range(2 * s["layers"])]
        step = (ids[:, :1], torch.ones(1, 3, dtype=torch.long, device=device),
                torch.tensor([[2]], device=device), *past)
        start = time.time()
        with torch.no_grad():
            torch.onnx.export(dec, step, str(d / "model.onnx"),
                              input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                              output_names=["logits", *present_names], dynamic_axes=dyn,
                              opset_version=17, dynamo=False)
        print(f"{dtype}: exported {d / 'model.onnx'} in {time.time() - start:.1f}s", flush=True)
        sidecar = {
            "format": "sidx-generator", "version": 1, "vocab_size": vocab, "pad_id": PAD,
            "bos_id": BOS, "sep_id": SEP, "end_of_sid_id": SEP, "sid_token_offset": s["base"],
            "codebook_sizes": layout, "sid_token_limit": sum(layout) + args.disambiguation,
            "max_positions": 4096, "max_history_items": 20,
        }
        (d / "generator.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    hf.to("cpu", torch.float32)


def hf_peer(args):
    import sidx
    import transformers as tf
    from sidx.hf import prefix_allowed_tokens_fn

    dt = {"fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    model = tf.AutoModelForCausalLM.from_pretrained(pathlib.Path(args.model) / "hf", dtype=dt)
    model = model.to(args.device).eval()
    sidecar = pathlib.Path(args.model) / args.dtype / "generator.json"
    if not sidecar.is_file():
        sidecar = pathlib.Path(args.model) / "fp32" / "generator.json"
    vocab = sidx.Vocab.from_sidecar(str(sidecar))
    index = sidx.Index(args.index)
    max_sid = index.stats()["max_sid_len"]
    prompts = json.loads(pathlib.Path(args.prompts).read_text())
    for config in args.configs.split(","):
        batch, beam = (int(x) for x in config.split("x"))
        p = [prompts[i % len(prompts)] for i in range(batch)]
        width = max(map(len, p))
        ids = torch.tensor([[PAD] * (width - len(x)) + x for x in p], device=args.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in p], device=args.device)
        allowed = prefix_allowed_tokens_fn(index, vocab, width)

        def run():
            with torch.no_grad():
                return model.generate(
                    input_ids=ids, attention_mask=mask, num_beams=beam,
                    num_return_sequences=min(beam, 10), prefix_allowed_tokens_fn=allowed,
                    length_penalty=0.0, early_stopping=False, max_new_tokens=max_sid + 1,
                    do_sample=False, eos_token_id=SEP, pad_token_id=PAD, use_cache=True)

        out = run()
        times = []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = run()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        sid_of = {v: t for t, v in enumerate(vocab.sid_token_ids.tolist())}
        invalid = 0
        for seq in out.tolist():
            sid = []
            for t in seq[width:]:
                if t not in sid_of:
                    break
                sid.append(sid_of[t])
            invalid += not index.is_complete(sid)
        print(json.dumps({"peer": "hf", "device": args.device, "dtype": args.dtype, "batch": batch,
                          "beam": beam, "ms": statistics.median(times), "invalid": invalid,
                          "returned": len(out)}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--out", required=True)
    e.add_argument("--dtype", default="fp16,fp32")
    e.add_argument("--layout", default="2048,2048,2048")
    e.add_argument("--disambiguation", type=int, default=256)
    e.add_argument("--small", action="store_true")
    e.add_argument("--seed", type=int, default=0)
    h = sub.add_parser("hf")
    h.add_argument("--model", required=True, help="the export folder (its hf/)")
    h.add_argument("--index", required=True)
    h.add_argument("--prompts", required=True)
    h.add_argument("--configs", default="1x10,8x20,8x70,32x20")
    h.add_argument("--dtype", default="fp16")
    h.add_argument("--device", default="cuda")
    h.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    export(args) if args.cmd == "export" else hf_peer(args)


if __name__ == "__main__":
    main()
