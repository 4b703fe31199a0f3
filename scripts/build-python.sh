#!/usr/bin/env bash
# Builds the Python package (python/sidx: PyO3, abi3 wheel for CPython >= 3.9)
# with maturin into target/wheels and installs it into the project venv .venv
# (or the venv given as $1, e.g. one with torch for tests_hf). Incremental:
# cargo rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
scripts/setup-python.sh python/requirements-python.txt >/dev/null
rm -f target/wheels/sidx-*.whl
.venv/bin/maturin build --release --quiet --manifest-path python/sidx/Cargo.toml --out target/wheels
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels/sidx-*.whl
echo "python package ready: $(ls target/wheels/sidx-*.whl) in $venv"
