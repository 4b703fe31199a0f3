#!/usr/bin/env bash
# The Spark recipe (python/sidx_spark.py): creates or updates the venv
# .venv-spark with python/requirements-spark.txt (PySpark in local mode needs
# Java 17+ and Python 3.11+), installs the newest sidx wheel from target/wheels
# (scripts/build-python.sh builds it), then runs the job with "$@", e.g.
#   scripts/spark-encode.sh --embeddings emb/ --out work/ --master 'local[2]'
#   target/release/sidx index build --sids work/sids \
#       --codebooks work/quantizer/codebooks.npy --out idx/
# SIDX_BIN (default target/release/sidx) is the binary that trains the
# codebooks; SIDX_WHEEL overrides the wheel. The workers run with RAYON_NUM_THREADS=1: local[N] = N cores.
# SPARK_SETUP_ONLY=1 sets up the venv and exits (the test and the bench use it).
set -euo pipefail
[ -z "${SIDX_WHEEL:-}" ] || SIDX_WHEEL=$(realpath "$SIDX_WHEEL")
cd "$(dirname "$0")/.."
root=$PWD
command -v java >/dev/null || { echo "spark-encode: PySpark needs Java 17+ (java not on PATH)" >&2; exit 1; }
[ -x .venv-spark/bin/python ] || python3 -m venv .venv-spark
.venv-spark/bin/python -m pip install --quiet --disable-pip-version-check -r python/requirements-spark.txt
wheel=${SIDX_WHEEL:-$(ls -t target/wheels/sidx-*.whl 2>/dev/null | head -n1 || true)}
[ -n "$wheel" ] || { echo "spark-encode: no wheel in target/wheels: run scripts/build-python.sh" >&2; exit 1; }
.venv-spark/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
[ "${SPARK_SETUP_ONLY:-0}" = 1 ] && { echo "spark venv ready: .venv-spark with $wheel" >&2; exit 0; }
export SIDX_BIN=${SIDX_BIN:-$root/target/release/sidx}
cd "$OLDPWD"
exec "$root/.venv-spark/bin/python" "$root/python/sidx_spark.py" "$@"
