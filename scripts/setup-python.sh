#!/usr/bin/env bash
# Creates (or updates) the project venv .venv with the pinned packages of the
# given requirements files (default: python/requirements-client.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- python/requirements-client.txt
[ -x .venv/bin/python ] || python3 -m venv .venv
args=()
for r in "$@"; do args+=(-r "$r"); done
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${args[@]}"
echo "python venv ready: .venv ($(.venv/bin/python --version)) with $*"
