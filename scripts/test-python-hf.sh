#!/usr/bin/env bash
# The Python package's Hugging Face tests (python/sidx/tests_hf: SidxLogitsProcessor
# and prefix_allowed_tokens_fn in HF generate, bit-identical to a dict trie),
# kept out of scripts/test.sh because torch from PyPI is ~6 GB. Uses the venv
# given as $1 (default .venv-hf, created from python/requirements-hf.txt if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-hf}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r python/requirements-hf.txt
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest==9.2.0
[ -x target/release/sidx ] || cargo build --release
scripts/build-python.sh "$venv"
"$venv/bin/python" -m pytest -q python/sidx/tests_hf
