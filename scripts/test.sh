#!/usr/bin/env bash
# The README's test command: the project venv for the Python client test,
# then every Rust test (unit, integration, gRPC on loopback, property tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh python/requirements-client.txt
cargo test --release "$@"
