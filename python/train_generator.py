"""Trains a small causal transformer on users' histories written as SID tokens
and exports it to ONNX for `sidx serve generator` / `sidx generate`.

    .venv/bin/python python/train_generator.py --sids SIDS.tsv \
        --sequences sequences.txt --out DIR [--layers 2 --width 64 ...]

Writes DIR/model.onnx (no KV cache), DIR/model_kv.onnx (with KV cache),
DIR/generator.json (the sidecar) and DIR/train.json (what was trained on and
the losses). `--epochs 0` exports an untrained model of the given size (for
benchmarks; `--layout 2048,2048,2048` then replaces `--sids`).

The model is GPT-2 shaped (pre-LayerNorm blocks, learned positions, GELU MLP,
tied output embedding), written out in ~50 lines of torch rather than taken
from `transformers` so that both exports have explicit, Hugging Face / optimum
named inputs and outputs: input_ids, attention_mask, position_ids,
past_key_values.N.key|value -> logits, present.N.key|value. Logits are
returned for the last position only ([batch, 1, vocab]): that is all a decoder
needs and saves a [batch, seq, vocab] copy per step.

Sequence format (also the prompt format the server builds): BOS, then each
item's SID tokens followed by SEP; the SID to generate ends with SEP too, so
SEP is the end-of-SID token. SID token id t (the index's layer-tagged id) is
vocabulary id sid_token_offset + t.
"""

import argparse
import json
import math
import pathlib
import random
import sys
import time

import numpy as np
import torch
from torch import nn

PAD, BOS, SEP, OFFSET = 0, 1, 2, 3


def read_sids(path):
    """Item id -> list of layer-tagged token ids, and the layout, from a sidx SID file."""
    sids, header = {}, None
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("#sidx "):
                header = json.loads(line[len("#sidx "):])
                continue
            if not line or line.startswith("#"):
                continue
            item, tokens = line.split("\t")
            sids[item] = [tuple(int(x) for x in t.split(":")) for t in tokens.split()]
    if header is None:
        sys.exit(f"{path}: no #sidx header line (write SIDs with `sidx quantize`/`mitigate`)")
    sizes = header["codebook_sizes"]
    offsets = [sum(sizes[:l]) for l in range(len(sizes) + 1)]
    dis = max((c + 1 for s in sids.values() for (l, c) in s if l > len(sizes)), default=0)
    ids = {item: [offsets[min(l, len(sizes) + 1) - 1] + c for (l, c) in s] for item, s in sids.items()}
    return ids, sizes, offsets[-1] + dis


def read_sequences(path, known):
    """user_idx item item ... per line; items without a SID are an error."""
    users = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) < 2:
                continue
            for item in parts[1:]:
                if item not in known:
                    sys.exit(f"{path}:{lineno}: item {item!r} has no SID in the SID file")
            users.append(parts[1:])
    return users


def encode(items, sids):
    seq = [BOS]
    for item in items:
        seq += [OFFSET + t for t in sids[item]] + [SEP]
    return seq


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x, bias, past_k=None, past_v=None):
        b, t, w = x.shape
        hd = w // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(w, dim=2)
        q, k, v = (z.view(b, t, self.heads, hd).transpose(1, 2) for z in (q, k, v))
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + bias
        y = torch.softmax(att, dim=-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, w))
        return x + self.mlp(self.ln2(x)), k, v


class Generator(nn.Module):
    def __init__(self, vocab, layers, width, heads, positions):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(positions, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        for emb in (self.tok, self.pos):
            nn.init.normal_(emb.weight, std=0.02)

    def hidden(self, input_ids, attention_mask, position_ids, past=None):
        """Returns final hidden states [b, t, w] and the new (k, v) per block."""
        b, t = input_ids.shape
        total = attention_mask.shape[1]
        # Causal over the whole (past + new) sequence, and padding masked out.
        q_pos = torch.arange(total - t, total, device=input_ids.device).view(1, 1, t, 1)
        k_pos = torch.arange(total, device=input_ids.device).view(1, 1, 1, total)
        allowed = (k_pos <= q_pos) & (attention_mask.view(b, 1, 1, total) > 0)
        bias = torch.where(allowed, 0.0, -1e9)
        x = self.tok(input_ids) + self.pos(position_ids)
        present = []
        for i, block in enumerate(self.blocks):
            pk, pv = (past[2 * i], past[2 * i + 1]) if past is not None else (None, None)
            x, k, v = block(x, bias, pk, pv)
            present += [k, v]
        return self.ln(x), present

    def logits(self, h):
        return h @ self.tok.weight.T


class NoCache(nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, input_ids, attention_mask, position_ids):
        h, _ = self.g.hidden(input_ids, attention_mask, position_ids)
        return self.g.logits(h[:, -1:, :])


class WithCache(nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, input_ids, attention_mask, position_ids, *past):
        h, present = self.g.hidden(input_ids, attention_mask, position_ids, list(past))
        return (self.g.logits(h[:, -1:, :]), *present)


def batches(seqs, batch_size, rng):
    order = list(range(len(seqs)))
    rng.shuffle(order)
    for i in range(0, len(order), batch_size):
        chunk = [seqs[j] for j in order[i : i + batch_size]]
        n = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), n), PAD, dtype=torch.long)
        for r, s in enumerate(chunk):
            ids[r, : len(s)] = torch.tensor(s)
        yield ids


def train(model, seqs, args, log):
    rng = random.Random(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(len(seqs) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=max(steps, 1))
    losses = []
    for epoch in range(args.epochs):
        total, count = 0.0, 0
        for ids in batches(seqs, args.batch_size, rng):
            mask = (ids != PAD).long()
            pos = torch.arange(ids.shape[1]).expand_as(ids)
            h, _ = model.hidden(ids[:, :-1], mask[:, :-1], pos[:, :-1])
            logits = model.logits(h)
            target = ids[:, 1:].masked_fill(ids[:, 1:] == PAD, -100)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            count += 1
        losses.append(total / max(count, 1))
        log(f"epoch {epoch + 1}/{args.epochs}: loss {losses[-1]:.4f}")
    return losses


def export(model, args, out):
    model.eval()
    layers, heads = args.layers, args.heads
    hd = args.width // heads
    ids = torch.tensor([[BOS, OFFSET, SEP]])
    mask = torch.ones_like(ids)
    pos = torch.arange(3).view(1, 3)
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
           "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}
    torch.onnx.export(NoCache(model), (ids, mask, pos), str(out / "model.onnx"),
                      input_names=["input_ids", "attention_mask", "position_ids"],
                      output_names=["logits"], dynamic_axes=dyn, opset_version=17, dynamo=False)
    past = [torch.zeros(1, heads, 2, hd) for _ in range(2 * layers)]
    past_names, present_names = [], []
    for i in range(layers):
        for kind in ("key", "value"):
            past_names.append(f"past_key_values.{i}.{kind}")
            present_names.append(f"present.{i}.{kind}")
            dyn[past_names[-1]] = {0: "batch", 2: "past"}
            dyn[present_names[-1]] = {0: "batch", 2: "total"}
    step_ids = torch.tensor([[OFFSET]])
    torch.onnx.export(WithCache(model), (step_ids, torch.ones(1, 3, dtype=torch.long), torch.tensor([[2]]), *past),
                      str(out / "model_kv.onnx"),
                      input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                      output_names=["logits", *present_names], dynamic_axes=dyn, opset_version=17, dynamo=False)


def verify_exports(model, vocab, layers, out):
    """Checks both exports against torch with ONNX Runtime (when installed):
    the no-cache logits, and the KV-cache export fed one token at a time."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: exports not verified")
        return None
    rng = np.random.default_rng(0)
    ids = np.concatenate([[BOS], rng.integers(OFFSET, vocab, 9)]).reshape(1, -1).astype(np.int64)
    n = ids.shape[1]
    with torch.no_grad():
        h, _ = model.hidden(torch.tensor(ids), torch.ones(1, n, dtype=torch.long), torch.arange(n).view(1, n))
        want = model.logits(h[:, -1, :]).numpy()
    plain = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = plain.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                 "position_ids": np.arange(n).reshape(1, n)})[0][:, -1, :]
    kv = ort.InferenceSession(str(out / "model_kv.onnx"), providers=["CPUExecutionProvider"])
    past = {i.name: np.zeros([1, i.shape[1], 0, i.shape[3]], np.float32)
            for i in kv.get_inputs() if i.name.startswith("past_key_values.")}
    names = [o.name for o in kv.get_outputs()]
    for t in range(n):
        feed = {"input_ids": ids[:, t : t + 1], "attention_mask": np.ones((1, t + 1), np.int64),
                "position_ids": np.array([[t]], np.int64), **past}
        outs = dict(zip(names, kv.run(names, feed)))
        past = {f"past_key_values.{k[len('present.'):]}": v for k, v in outs.items() if k.startswith("present.")}
    step = outs["logits"][:, -1, :]
    err = float(max(np.abs(got - want).max(), np.abs(step - want).max()))
    if err > 1e-3:
        sys.exit(f"exported models disagree with torch: max |logit difference| {err}")
    print(f"exports verified with onnxruntime {ort.__version__}: max |logit difference| {err:.2e}")
    return err


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sids", help="sidx SID file (sids.tsv) the catalog is indexed with")
    p.add_argument("--layout", help="instead of --sids with --epochs 0: codebook sizes, e.g. 2048,2048,2048")
    p.add_argument("--disambiguation", type=int, default=256,
                   help="with --layout: disambiguation tokens the model knows")
    p.add_argument("--sequences", help="user_idx item item ... per line (required unless --epochs 0)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--positions", type=int, default=256, help="longest prompt + SID in tokens")
    p.add_argument("--max-history", type=int, default=20, help="most recent items kept per user")
    p.add_argument("--holdout", type=int, default=2,
                   help="last items of each user kept out of training (2 = leave-one-out valid + test)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.width % args.heads:
        sys.exit(f"--width {args.width} is not a multiple of --heads {args.heads}")

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.sids:
        sids, sizes, token_limit = read_sids(args.sids)
    elif args.layout and args.epochs == 0:
        sids, sizes = {}, [int(x) for x in args.layout.split(",")]
        token_limit = sum(sizes) + args.disambiguation
    else:
        sys.exit("give --sids (or --layout with --epochs 0 for an untrained benchmark model)")
    vocab = OFFSET + token_limit
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Generator(vocab, args.layers, args.width, args.heads, args.positions)
    losses, seqs = [], []
    if args.epochs > 0:
        if not args.sequences:
            sys.exit("--sequences is required to train (or pass --epochs 0)")
        users = read_sequences(args.sequences, sids)
        for items in users:
            train_items = items[: len(items) - args.holdout][-args.max_history - 1 :]
            if len(train_items) >= 2:
                seqs.append(encode(train_items, sids))
        too_long = max(len(s) for s in seqs)
        if too_long > args.positions:
            sys.exit(f"a training sequence has {too_long} tokens > --positions {args.positions}")
        start = time.time()
        losses = train(model, seqs, args, lambda m: print(m, flush=True))
        print(f"trained on {len(seqs)} users in {time.time() - start:.1f}s")
    export(model, args, out)
    export_error = verify_exports(model, vocab, args.layers, out)
    sidecar = {
        "format": "sidx-generator",
        "version": 1,
        "vocab_size": vocab,
        "pad_id": PAD,
        "bos_id": BOS,
        "sep_id": SEP,
        "end_of_sid_id": SEP,
        "sid_token_offset": OFFSET,
        "codebook_sizes": sizes,
        "sid_token_limit": token_limit,
        "max_positions": args.positions,
        "max_history_items": args.max_history,
    }
    (out / "generator.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    report = {"args": vars(args), "sequences": len(seqs), "losses": losses,
              "parameters": sum(p.numel() for p in model.parameters()),
              "export_max_logit_difference": export_error}
    (out / "train.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}/model.onnx, model_kv.onnx, generator.json ({report['parameters']} parameters)")


if __name__ == "__main__":
    main()
