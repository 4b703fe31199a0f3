#!/usr/bin/env bash
# The README's main job on a fresh clone: the ONNX Runtime library once
# (scripts/fetch-onnxruntime.sh, from PyPI), then `cargo run --release -- demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-onnxruntime.sh cpu >/dev/null
exec cargo run --release -- demo "$@"
