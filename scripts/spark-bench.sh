#!/usr/bin/env bash
# Measured run of the Spark recipe (python/sidx_spark.py) against
# single-process `sidx encode`, on one synthetic catalog and one set of
# codebooks, printing a Markdown table (path, items, seconds, items/s, cores,
# items/s per core, peak RSS of the whole process tree).
#
#   scripts/spark-bench.sh                          # 2,000,000 x 64-d, 16 shards
#   N=200000 SHARDS=8 scripts/spark-bench.sh        # a quick sanity run
#
# Environment: N (2000000), DIM (64), SHARDS (16), MASTER ('local[2]'),
# LAYERS (3), CODEBOOK_SIZE (256), TRAIN_SAMPLE (100000), WORK
# (out/spark-bench: the catalog and the codebooks are made once there and
# reused while N, DIM, SHARDS and the quantizer settings stay the same),
# SIDX_BIN (target/release/sidx), SPARK_ARGS (extra sidx_spark.py options,
# e.g. "--batch-size 20000 --max-partition-bytes 32m").
# Run it on an otherwise idle machine: the numbers are wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
N=${N:-2000000} DIM=${DIM:-64} SHARDS=${SHARDS:-16} MASTER=${MASTER:-local[2]}
LAYERS=${LAYERS:-3} CODEBOOK_SIZE=${CODEBOOK_SIZE:-256} TRAIN_SAMPLE=${TRAIN_SAMPLE:-100000}
WORK=$(realpath -m "${WORK:-out/spark-bench}")
export SIDX_BIN=$(realpath "${SIDX_BIN:-target/release/sidx}")
case $MASTER in
local) cores=1 ;;
"local[*]") cores=$(nproc) ;;
local\[*\]) cores=${MASTER#local\[}; cores=${cores%%[],]*} ;;
*) cores=${CORES:?set CORES for a master other than local[N]} ;;
esac
SPARK_SETUP_ONLY=1 scripts/spark-encode.sh
py=$root/.venv-spark/bin/python
mkdir -p "$WORK"
emb=$WORK/emb-$N-$DIM-$SHARDS q=$WORK/quantizer-$N-$DIM-$SHARDS-$LAYERS-$CODEBOOK_SIZE-$TRAIN_SAMPLE
rows=()

# measure LABEL ITEMS CORES CMD…: runs CMD, polling the RSS of its whole
# process tree (a JVM and its Python workers too); adds a table row. CMD's
# stdout goes to $MEASURE_OUT if set, else to stderr.
measure() {
  local label=$1 items=$2 c=$3
  shift 3
  local m
  m=$("$py" - "$@" <<'PY'
import os, subprocess, sys, time
def tree_rss(root):
    kids, rss = {}, {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{p}/statm") as f:
                rss[int(p)] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(p))
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += kids.get(p, [])
    return total
t = time.perf_counter()
out = os.environ.get("MEASURE_OUT")
proc = subprocess.Popen(sys.argv[1:], stdout=open(out, "w") if out else sys.stderr)
peak = 0
while proc.poll() is None:
    peak = max(peak, tree_rss(proc.pid))
    time.sleep(0.2)
secs = time.perf_counter() - t
if proc.returncode:
    sys.exit(f"failed ({proc.returncode}): {' '.join(sys.argv[1:])}")
print(f"{secs:.3f} {peak / 2**20:.0f}")
PY
) || return 1
  row "$label" "$items" "${m% *}" "$c" "${m#* } MiB"
}
# row LABEL ITEMS SECONDS CORES RSS
row() {
  rows+=("$("$py" -c 'import sys; l, n, s, c, r = sys.argv[1:]; n, s, c = int(n), float(s), int(c)
print(f"| {l} | {n:,} | {s:.2f} | {n / s:,.0f} | {c} | {n / s / c:,.0f} | {r} |")' "$@")")
}

if [ ! -e "$emb/.done" ]; then
  echo "spark-bench: writing the synthetic catalog ($N x $DIM, $SHARDS shards) into $emb" >&2
  "$py" python/sidx_spark.py --make-synthetic "$N,$DIM,$SHARDS" --embeddings "$emb" >&2
  touch "$emb/.done"
fi
if [ ! -e "$q/codebooks.npy" ]; then
  echo "spark-bench: training $LAYERS x $CODEBOOK_SIZE codebooks on $TRAIN_SAMPLE sampled items" >&2
  PYTHONPATH=python "$py" - "$emb" "$WORK/train-sample.npy" "$TRAIN_SAMPLE" <<'PY'
import pathlib, sys
import numpy as np, pyarrow.parquet as pq
import sidx_spark
emb, out, k = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
files = sorted(emb.glob("*.parquet"))
counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
take = np.random.default_rng(42).choice(sum(counts), size=min(k, sum(counts)), replace=False)
parts, base = [], 0
for f, n in zip(files, counts):
    rows = np.sort(take[(take >= base) & (take < base + n)]) - base
    base += n
    if len(rows):
        parts.append(sidx_spark.embedding_matrix(pq.read_table(f, columns=["embedding"]).column(0))[rows])
np.save(out, np.concatenate(parts))
PY
  measure "sidx quantize: train on the $TRAIN_SAMPLE sample (not comparable)" "$TRAIN_SAMPLE" "$(nproc)" \
    "$SIDX_BIN" --log warn quantize --embeddings "$WORK/train-sample.npy" --layers "$LAYERS" \
    --codebook-size "$CODEBOOK_SIZE" --train-sample 0 --out "$q"
fi

# The same catalog as one .npy + id file, for Parquet-vs-.npy encode throughput.
npy=$WORK/emb-$N-$DIM.npy
if [ ! -e "$npy" ]; then
  PYTHONPATH=python "$py" - "$emb" "$npy" "$WORK/ids-$N.txt" <<'PY'
import pathlib, sys
import numpy as np, pyarrow.parquet as pq
import sidx_spark
emb, out, ids = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
tables = [pq.read_table(f) for f in sorted(emb.glob("*.parquet"))]
np.save(out, np.concatenate([sidx_spark.embedding_matrix(t.column("embedding")) for t in tables]))
pathlib.Path(ids).write_text("\n".join(i for t in tables for i in t.column("id").to_pylist()) + "\n")
PY
fi

rm -rf "$WORK/single.parquet" "$WORK/single-npy.parquet" "$WORK/spark" "$WORK/idx"
measure "sidx encode from one .npy + id file (one process, --threads $cores)" "$N" "$cores" \
  "$SIDX_BIN" --log warn --threads "$cores" encode --codebooks "$q/codebooks.npy" --embeddings "$npy" \
  --ids "$WORK/ids-$N.txt" --out "$WORK/single-npy.parquet"
measure "sidx encode from the Parquet shards, streamed (one process, --threads $cores)" "$N" "$cores" \
  "$SIDX_BIN" --log warn --threads "$cores" encode --codebooks "$q/codebooks.npy" --embeddings "$emb" \
  --out "$WORK/single.parquet"
cmp -s "$WORK/single.parquet" "$WORK/single-npy.parquet" || { echo "spark-bench: .npy and Parquet encodes differ" >&2; exit 1; }
# shellcheck disable=SC2086
MEASURE_OUT=$WORK/spark.json measure "Spark $MASTER job, wall (JVM start, read, encode, write)" "$N" "$cores" \
  scripts/spark-encode.sh --embeddings "$emb" --out "$WORK/spark" --codebooks "$q" --master "$MASTER" \
  ${SPARK_ARGS:-}
cat "$WORK/spark.json" >&2
stage=$("$py" -c 'import json, sys; r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(r["items"], r["seconds"], r["partitions"])' "$WORK/spark.json")
read -r items secs parts <<<"$stage"
row "Spark $MASTER mapInArrow + write stage ($parts partitions)" "$items" "$secs" "$cores" "(above)"
# (A catalog can have more items behind one SID than 16-bit token ids can
# disambiguate: the build refuses it, and the table says so.)
if ! measure "sidx index build on the Spark shards (--threads $cores)" "$N" "$cores" \
  "$SIDX_BIN" --log warn --threads "$cores" index build --sids "$WORK/spark/sids" \
  --codebooks "$q/codebooks.npy" --out "$WORK/idx"; then
  rows+=("| sidx index build on the Spark shards | $N | failed: see the error above | | | | |")
fi

echo
echo "$N items x $DIM-d, $SHARDS shards, $LAYERS x $CODEBOOK_SIZE codebooks, $(nproc) cores on this machine:"
echo
echo "| path | items | seconds | items/s | cores | items/s per core | peak RSS |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
