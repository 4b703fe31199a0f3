#!/usr/bin/env bash
# Creates the project venv (.venv) with the pinned Python packages a
# requirements file names (default: python/requirements-bench.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-python/requirements-bench.txt}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
echo "python venv ready: .venv ($(.venv/bin/python --version)), $req"
