#!/usr/bin/env python3
"""Holds the declared minimum Rust version to the truth: Cargo.toml's
`rust-version` must be at least every resolved dependency's (from `cargo
metadata`, i.e. Cargo.lock), and the Dockerfile's default builder image must
ship at least that Rust. Prints each offence; exits 1 on any."""

import json
import pathlib
import re
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parent.parent


def version(v):
    return tuple(int(x) for x in v.split("."))[:3] + (0,) * (3 - len(v.split(".")))


meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--locked"], cwd=root,
    capture_output=True, text=True, check=True).stdout)
ours = next(p for p in meta["packages"] if p["id"] in meta["workspace_members"])
declared = ours.get("rust_version")
problems = []
if not declared:
    problems.append("Cargo.toml declares no rust-version")
else:
    resolved = {n["id"] for n in meta["resolve"]["nodes"]}
    for p in meta["packages"]:
        need = p.get("rust_version")
        if p["id"] in resolved and need and version(need) > version(declared):
            problems.append(f"{p['name']} {p['version']} needs Rust {need}, "
                            f"Cargo.toml declares rust-version {declared}")
    docker = (root / "Dockerfile").read_text()
    m = re.search(r"ARG BUILDER_IMAGE=\S*rust:(\d+\.\d+(?:\.\d+)?)", docker)
    if not m:
        problems.append("Dockerfile: no default `ARG BUILDER_IMAGE=…rust:X.Y…`")
    elif version(m.group(1)) < version(declared):
        problems.append(f"Dockerfile: the builder's Rust {m.group(1)} is older than "
                        f"rust-version {declared}")
for p in problems:
    print("msrv:", p)
if problems:
    sys.exit(1)
print(f"msrv holds: rust-version {declared} covers every dependency and the Dockerfile's builder")
