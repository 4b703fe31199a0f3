#!/usr/bin/env bash
# The README's test command: the project venv for the Python client test, the
# ONNX Runtime library (.ort/lib, found through .cargo/config.toml), then every
# Rust test (unit, integration, gRPC on loopback, ONNX models, property tests),
# the Helm chart checks (helm + kubernetes-validate from fetch-helm-tools.sh),
# and — without test filters — the Python package (scripts/build-python.sh:
# the maturin wheel installed into .venv, then its pytest suite), the Spark
# recipe's test (python/sidx/tests_spark in .venv-spark; SKIPPED with the
# reason where no java can be found, a failure under SIDX_REQUIRE_SPARK=1, as
# CI sets) and the container test (scripts/container-test.sh:
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
if command -v java >/dev/null; then
  SPARK_SETUP_ONLY=1 scripts/spark-encode.sh
  .venv-spark/bin/python -m pytest -q python/sidx/tests_spark
elif [ "${SIDX_REQUIRE_SPARK:-0}" = 1 ]; then
  echo "the Spark recipe's test needs Java 17+ (SIDX_REQUIRE_SPARK=1)" >&2; exit 1
else
  echo "SKIPPED: the Spark recipe's test (python/sidx/tests_spark): no java on PATH"
fi
scripts/container-test.sh
