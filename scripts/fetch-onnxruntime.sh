#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library for `ort` (load-dynamic) from the
# PyPI wheel — the CDN `ort` would use is not reachable — into .ort/lib.
# Usage: scripts/fetch-onnxruntime.sh [cpu|gpu]   (gpu: onnxruntime-gpu, CUDA 13)
# Then: export ORT_DYLIB_PATH=$PWD/.ort/lib/libonnxruntime.so.$VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.31.1
flavor="${1:-cpu}"
# SHA-256 of the cp311 manylinux_2_28_x86_64 wheels of $VERSION.
case "$flavor" in
  cpu) package=onnxruntime sha256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f ;;
  gpu) package=onnxruntime-gpu sha256=e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6 ;;
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
if ! echo "$sha256  $wheel" | sha256sum --check --status; then
  echo "$wheel: SHA-256 is $(sha256sum "$wheel" | cut -d' ' -f1), expected $sha256" >&2
  exit 1
fi
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
