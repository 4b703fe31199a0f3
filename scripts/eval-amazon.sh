#!/usr/bin/env bash
# The paper's Table 2 on ../shared/data/amazon_scientific (leave-one-out):
# RQ SIDs as is, layer 2 dropped, and top-k dropping for a few K; a small
# generator trained on each (python/train_generator.py, needs torch:
# scripts/setup-python.sh python/requirements-train.txt, or PYTHON=...), then
# `sidx eval` constrained and unconstrained. Results under $OUT (default
# target/eval-amazon): one directory per variant with report.json, eval.svg,
# hourglass.json, and summary.tsv.
#   scripts/eval-amazon.sh [K ...]            (default K: 4 8 16; `none`: no mitigations)
# Environment: CODES (codebook size, 32), DROP_LAYER2 (0: no drop-layer2
# variant beside the top-k ones, 1), METHOD (sidx quantize --method,
# rq-kmeans), QSEED (the quantizer's seed, 42), EPOCHS (10), SEED (the
# generator's initialisation and shuffling, 0; the SIDs do not depend on
# it), OUT, DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/amazon_scientific}
OUT=${OUT:-target/eval-amazon}
PYTHON=${PYTHON:-.venv/bin/python}
SIDX=${SIDX:-target/release/sidx}
EPOCHS=${EPOCHS:-10}
CODES=${CODES:-32}
SEED=${SEED:-0}
METHOD=${METHOD:-rq-kmeans}
QSEED=${QSEED:-42}
[ $# -gt 0 ] || set -- 4 8 16
[ "$1" = none ] && set --
mkdir -p "$OUT"
"$SIDX" quantize --embeddings "$DATA/emb_all-MiniLM-L6-v2.npy" --ids "$DATA/item_ids.txt" \
  --layers 3 --codebook-size "$CODES" --method "$METHOD" --seed "$QSEED" --train-sample 0 \
  --out "$OUT/rq" >/dev/null
variants=(rq)
if [ $# -gt 0 ] && [ "${DROP_LAYER2:-1}" != 0 ]; then
  variants+=(drop-layer2)
  "$SIDX" mitigate --sids "$OUT/rq/sids.tsv" --out "$OUT/drop-layer2.tsv" --strategy drop-layer2 >/dev/null
fi
for k in "$@"; do
  "$SIDX" mitigate --sids "$OUT/rq/sids.tsv" --out "$OUT/top$k.tsv" --strategy top-k --k "$k" >/dev/null
  variants+=("top$k")
done
printf "variant\tmethod\tlayer2_norm_entropy\tlayer2_gini\tcolliding\tR@1\tR@10\tR@50\tN@10\tR@10_unconstrained\tinvalid@10\thead_R@10\ttail_R@10\n" > "$OUT/summary.tsv"
for v in "${variants[@]}"; do
  sids="$OUT/$v.tsv"; [ "$v" = rq ] && sids="$OUT/rq/sids.tsv"
  dir="$OUT/$v"; mkdir -p "$dir"
  "$SIDX" hourglass --sids "$sids" --json > "$dir/hourglass.json"
  rm -rf "$dir/index"
  "$SIDX" index build --sids "$sids" --out "$dir/index" >/dev/null
  "$PYTHON" python/train_generator.py --sids "$sids" --sequences "$DATA/sequences.txt" \
    --out "$dir/model" --epochs "$EPOCHS" --seed "$SEED" > "$dir/train.log" 2>&1
  "$SIDX" --log warn eval --index "$dir/index" --model "$dir/model/model_kv.onnx" \
    --sequences "$DATA/sequences.txt" --reference-sids "$OUT/rq/sids.tsv" --out "$dir" | tee "$dir/eval.txt"
  "$PYTHON" - "$dir" "$v" "$METHOD" >> "$OUT/summary.tsv" <<'PY'
import json, sys
d, v, method = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(f"{d}/report.json")); h = json.load(open(f"{d}/hourglass.json"))
l2 = next((l for l in h["layers"] if l["layer"] == 2), None)
i = r["ks"].index(10)
ent = f"{l2['normalized_entropy']:.3f}" if l2 and l2["items"] else "-"
gini = f"{l2['gini']:.3f}" if l2 and l2["items"] else "-"
rec = lambda k: f"{r['constrained']['recall'][r['ks'].index(k)]:.4f}" if k in r["ks"] else "-"
print("\t".join([v, method, ent, gini, str(h["collisions"]["colliding_items"]), rec(1), rec(10), rec(50),
                 f"{r['constrained']['ndcg'][i]:.4f}",
                 f"{r['unconstrained']['recall'][i]:.4f}", f"{r['invalid_ratio'][i]:.3f}",
                 f"{r['head']['recall'][i]:.4f}", f"{r['tail']['recall'][i]:.4f}"]))
PY
done
column -t "$OUT/summary.tsv"
