#!/usr/bin/env python3
"""Holds the module layering of src/: every `crate::` / `sidx::` import of a
top-level module points down the pipeline (LAYERS below), and no module's
submodules import each other in a circle. Prints each offence; exits 1 on any."""

import collections
import pathlib
import re
import sys

# Lower layers first; a module may import its own layer's peers only if listed
# in PEERS, and any lower layer.
LAYERS = [
    ["fsx", "progress", "failpoint"],
    ["npy", "sid"],
    ["quantize", "hourglass", "synth", "shards"],
    ["index"],
    ["catalog", "pipeline"],
    ["generate"],
    ["eval", "proto"],
    ["client", "server"],
    ["cli"],  # the binary: main.rs, cli/, bench/
    ["bench"],
]
PEERS = {("npy", "fsx"), ("sid", "fsx"), ("sid", "npy")}
LEVEL = {m: i for i, layer in enumerate(LAYERS) for m in layer}

src = pathlib.Path(__file__).resolve().parent.parent / "src"
problems = []
sub_edges = collections.defaultdict(set)


def code(path):
    return "\n".join(l for l in path.read_text().splitlines() if not l.strip().startswith("//"))


for path in sorted(src.rglob("*.rs")):
    rel = path.relative_to(src).parts
    top = rel[0].removesuffix(".rs")
    if top in ("lib", "main"):
        continue
    if top not in LEVEL:
        problems.append(f"src/{top}: not placed in scripts/check-layers.py LAYERS")
        continue
    text = code(path)
    for target in sorted(set(re.findall(r"\b(?:crate|sidx)::([a-z_]+)", text))):
        if target == top or target not in LEVEL:
            continue
        if LEVEL[target] >= LEVEL[top] and (top, target) not in PEERS:
            problems.append(f"{path.relative_to(src.parent)}: {top} imports {target}, which is not below it")
    if len(rel) > 1:
        me = rel[1].removesuffix(".rs")
        for t in set(re.findall(r"\bsuper::([a-z_]+)", text)):
            if t != me and (src / rel[0] / f"{t}.rs").exists():
                sub_edges[f"{rel[0]}/{me}"].add(f"{rel[0]}/{t}")


def find_cycle():
    state = {}

    def visit(n, stack):
        state[n] = 1
        for t in sorted(sub_edges.get(n, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                c = visit(t, stack + [t])
                if c:
                    return c
        state[n] = 2
        return None

    for n in sorted(sub_edges):
        if n not in state:
            c = visit(n, [n])
            if c:
                return c
    return None


cycle = find_cycle()
if cycle:
    problems.append("import circle: " + " -> ".join(cycle))
for p in problems:
    print(p)
if problems:
    sys.exit(1)
print(f"layers hold: {len(LEVEL)} modules, no upward import, no circle")
