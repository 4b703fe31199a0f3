#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library for `ort` (load-dynamic) from the
# PyPI wheel — the CDN `ort` would use is not reachable — into .ort/lib.
# Usage: scripts/fetch-onnxruntime.sh [cpu|gpu]   (gpu: onnxruntime-gpu, CUDA 13)
# Then: export ORT_DYLIB_PATH=$PWD/.ort/lib/libonnxruntime.so.$VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.31.1
flavor="${1:-cpu}"
case "$flavor" in
  cpu) package=onnxruntime ;;
  gpu) package=onnxruntime-gpu ;;
  *) echo "usage: $0 [cpu|gpu]" >&2; exit 2 ;;
esac
dest=.ort/lib
[ "$flavor" = gpu ] && dest=.ort/lib-gpu
if [ -f "$dest/libonnxruntime.so.$VERSION" ]; then
  echo "$dest/libonnxruntime.so.$VERSION already present"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
  --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$work" "$package==$VERSION"
wheel=$(ls "$work"/*.whl)
mkdir -p "$dest"
python3 - "$wheel" "$dest" <<'PY'
import sys, zipfile, pathlib
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime")]
    for n in names:
        target = dest / pathlib.Path(n).name
        target.write_bytes(z.read(n))
        print("extracted", target, target.stat().st_size, "bytes")
    if not names:
        raise SystemExit(f"{wheel}: no libonnxruntime* inside")
PY
echo "export ORT_DYLIB_PATH=$PWD/$dest/libonnxruntime.so.$VERSION"
