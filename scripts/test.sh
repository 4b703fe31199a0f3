#!/usr/bin/env bash
# The README's test command: the project venv for the Python client test, the
# ONNX Runtime library (.ort/lib, found through .cargo/config.toml), then every
# Rust test (unit, integration, gRPC on loopback, ONNX models, property tests),
# the Helm chart checks (helm + kubernetes-validate from fetch-helm-tools.sh),
# and — without test filters — the Python package (scripts/build-python.sh:
# the maturin wheel installed into .venv, then its pytest suite) and the container test (scripts/container-test.sh:
# SKIPPED with the reason where no container runtime can be had; CI sets
# SIDX_REQUIRE_CONTAINERS=1, which makes that a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh python/requirements-client.txt
scripts/fetch-onnxruntime.sh cpu
scripts/fetch-helm-tools.sh
cargo test --release --features failpoints "$@"
[ $# -gt 0 ] && exit 0
scripts/build-python.sh
.venv/bin/python -m pytest -q python/sidx/tests
scripts/container-test.sh
