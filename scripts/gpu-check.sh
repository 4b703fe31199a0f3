#!/usr/bin/env bash
# The generator on the CUDA execution provider, in one short command on a
# CUDA 13 machine (no network needed): the CUDA EP test (the fixture model on
# cuda vs cpu: same items; a missing GPU fails clearly), then the generator
# benchmark on CUDA (with a CPU agreement check) and on CPU for comparison.
#
#   scripts/gpu-check.sh
#
# Inputs (environment, defaults in brackets):
#   SIDX_BIN      sidx binary                          [target/release/sidx]
#   SIDX_ORT_DIR  onnxruntime-gpu libraries: libonnxruntime.so.1.31.1,
#                 libonnxruntime_providers_shared.so and
#                 libonnxruntime_providers_cuda.so in ONE folder
#                 (scripts/fetch-onnxruntime.sh gpu)    [.ort/lib-gpu]
#   SIDX_BENCH_MODEL  6-layer, 256-wide generator over 3 × 2048 codes
#                 (python/train_generator.py --layout 2048,2048,2048
#                  --epochs 0 --layers 6 --width 256 --heads 8 --positions 128)
#                                                      [target/bench-model/model_kv.onnx]
#   SIDX_GPU_DEVICE   cpu runs the same steps without a GPU (to test this script) [cuda:0]
#   SIDX_BENCH_SIDS   catalog size of the benchmark     [10000000, STATIC's]
#   SIDX_QWEN     0 skips the Qwen2-0.5B-shaped part below [1]
#   SIDX_QWEN_SMALL   --small: a 2-layer stand-in (a dry run on a CPU)    []
#   SIDX_CONFIGS  batch × beam pairs of that part       [1x10,8x20,8x70,32x20]
#   SIDX_PYTHON   python with torch + transformers      [python3]
#   SIDX_WHEEL    the sidx Python wheel for HF's prefix_allowed_tokens_fn
#                 (maturin build --release -m python/sidx/Cargo.toml;
#                 none = `import sidx` must already work)          []
#
# The Qwen2-0.5B-shaped part (issue 14): benches/gpu_decoder.py builds the
# decoder here with random weights (24 layers, 896 wide, 14 / 2 heads, a
# Qwen2 vocabulary + 3 × 2048 SID tokens), exports it with its cache in fp16
# and fp32, then `sidx bench generate` times it on $DEVICE with
# device-resident and host decoding and on the CPU cores, and HF `generate`
# with prefix_allowed_tokens_fn over the same index times it on $DEVICE, on
# the same prompts.
#
# CUDA libraries (cuBLAS, cuDNN, cudart 13 ...) are found by the system loader,
# or, when PyTorch's pip packages are installed, in site-packages/nvidia/*/lib,
# which this script adds to LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SIDX_BIN:-target/release/sidx}
ORT_DIR=${SIDX_ORT_DIR:-.ort/lib-gpu}
MODEL=${SIDX_BENCH_MODEL:-target/bench-model/model_kv.onnx}
DEVICE=${SIDX_GPU_DEVICE:-cuda:0}
SIDS=${SIDX_BENCH_SIDS:-10000000}
export ORT_DYLIB_PATH=$ORT_DIR/libonnxruntime.so.1.31.1
export SIDX_LOG=${SIDX_LOG:-warn}
for f in "$BIN" "$ORT_DYLIB_PATH" "$MODEL"; do
  [ -e "$f" ] || { echo "gpu-check: $f is missing (see the header of $0)" >&2; exit 2; }
done
if py=$(command -v python3) && nv=$("$py" -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null); then
  for d in "$nv"/nvidia/*/lib; do LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; done
  export LD_LIBRARY_PATH
  echo "CUDA libraries from PyTorch's packages: $nv/nvidia/*/lib"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== CUDA EP test: the fixture generator on $DEVICE vs cpu"
"$BIN" index build --sids tests/fixtures/generator/sids.tsv --out "$work/fixture" >/dev/null
gen() {
  "$BIN" generate --index "$work/fixture" --model tests/fixtures/generator/model_kv.onnx \
    --history 9,10,11,12 --beam 20 --top-k 10 --json --device "$@"
}
gen "$DEVICE" > "$work/gpu.json"
gen cpu > "$work/cpu.json"
python3 - "$work/gpu.json" "$work/cpu.json" <<'PY'
import json, sys
g, c = (json.load(open(p)) for p in sys.argv[1:])
gi, ci = [i["item_id"] for i in g["items"]], [i["item_id"] for i in c["items"]]
diff = max(abs(a["score"] - b["score"]) for a, b in zip(g["items"], c["items"]))
print(f"  device {g['device']}: {len(gi)} items, same as cpu: {gi == ci}, max |score difference| {diff:.2e}")
if gi != ci or diff > 1e-2:
    sys.exit("CUDA and CPU results differ")
PY
if [ "$DEVICE" != cpu ]; then
  if "$BIN" generate --index "$work/fixture" --model tests/fixtures/generator/model_kv.onnx \
      --history 9 --device cuda:99 > /dev/null 2> "$work/err.txt"; then
    echo "  cuda:99 was accepted: expected a clear error" >&2; exit 1
  fi
  echo "  cuda:99 refused: $(grep -o 'CUDA execution provider[^(]*' "$work/err.txt" | head -1)"
fi

echo "== bench generate on $DEVICE ($SIDS SIDs, 3 × 2048; STATIC: batch 2 × beam 70)"
"$BIN" bench generate --sids "$SIDS" --model "$MODEL" --device "$DEVICE" --decoding resident,host --compare-cpu --repeats 5
echo "== bench generate on cpu ($(nproc) cores), same catalog and model"
"$BIN" bench generate --sids "$SIDS" --model "$MODEL" --device cpu --repeats 3

[ "${SIDX_QWEN:-1}" = 0 ] && exit 0
PY=${SIDX_PYTHON:-python3}
CONFIGS=${SIDX_CONFIGS:-1x10,8x20,8x70,32x20}
echo "== Qwen2-0.5B-shaped decoder${SIDX_QWEN_SMALL:+ (--small stand-in)}: built with PyTorch, exported with its cache"
"$PY" benches/gpu_decoder.py export --out "$work/qwen" --dtype fp16,fp32 ${SIDX_QWEN_SMALL:+--small}
bench() {
  "$BIN" bench generate --sids "$SIDS" --configs "$CONFIGS" --search-repeats 20 \
    --workdir "$work/bench" --prompts-out "$work/prompts.json" "$@"
}
for dtype in fp16 fp32; do
  [ -f "$work/qwen/$dtype/model.onnx" ] || continue
  echo "== sidx on $DEVICE, $dtype: device-resident, then host decoding"
  bench --model "$work/qwen/$dtype/model.onnx" --device "$DEVICE" --decoding resident,host --repeats 3
done
echo "== sidx on cpu ($(nproc) cores), fp32"
bench --model "$work/qwen/fp32/model.onnx" --device cpu --repeats 1
if [ -n "${SIDX_WHEEL:-}" ]; then
  "$PY" -m pip install --quiet --no-deps --no-index --target "$work/py" "$SIDX_WHEEL"
  export PYTHONPATH="$work/py${PYTHONPATH:+:$PYTHONPATH}"
fi
hf_device=cuda; hf_dtype=fp16
if [ "$DEVICE" = cpu ]; then hf_device=cpu; hf_dtype=fp32; fi
echo "== HF generate on $hf_device, $hf_dtype, prefix_allowed_tokens_fn over the same index and prompts"
"$PY" benches/gpu_decoder.py hf --model "$work/qwen" --index "$work/bench/index" \
  --prompts "$work/prompts.json" --configs "$CONFIGS" --dtype "$hf_dtype" --device "$hf_device"
