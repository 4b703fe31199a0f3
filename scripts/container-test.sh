#!/usr/bin/env bash
# The container test: the sidx image built where no registry is reachable
# and run as the Helm chart runs it (user 65532, read-only root, no
# capabilities, no privilege escalation), then checked from outside:
#   1. container tools from apt (podman, buildah, runc, debootstrap, podman-compose);
#   2. a Debian bookworm base by debootstrap (cached as a tarball);
#   3. the runtime image around the binary this checkout built (deploy/prebuilt.Dockerfile);
#   4. index + generator containers: health and `sidx probe` on both, a catalog
#      update through the admin RPC (`sidx index apply`) that the generator's
#      mirror follows, the hardening checked from inside, SIGTERM → exit 0;
#   5. deploy/compose.yaml up, probed, down;
#   6. the full multi-stage Dockerfile (cargo inside) when it, Cargo.lock or the
#      toolchain changed since its last successful build here (SIDX_FULL_IMAGE=1: always).
# Usage: scripts/container-test.sh          (after `cargo build --release`)
# Where no container runtime can be had it says SKIPPED and why; with
# SIDX_REQUIRE_CONTAINERS=1 (CI) that is a failure instead.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${SIDX_CONTAINER_CACHE:-/var/cache/sidx-containers}
image=localhost/sidx:ci
base=localhost/sidx-base:bookworm
t_start=$(date +%s)
step() { echo "-- container test [$(($(date +%s) - t_start)) s]: $*"; }
skip() {
  if [ "${SIDX_REQUIRE_CONTAINERS:-0}" = 1 ]; then
    echo "container test FAILED: $* (SIDX_REQUIRE_CONTAINERS=1)" >&2
    exit 1
  fi
  echo "container test SKIPPED: $*" >&2
  exit 0
}

[ -x target/release/sidx ] || { echo "target/release/sidx is missing: cargo build --release" >&2; exit 1; }
scripts/fetch-onnxruntime.sh cpu >/dev/null

# 1. Tools.
tools="podman buildah runc debootstrap podman-compose"
missing=$(for t in $tools; do command -v "$t" >/dev/null || echo "$t"; done)
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || skip "needs root to install $(echo $missing) with apt-get (and to run rootful podman)"
  step "apt-get install podman buildah runc debootstrap podman-compose"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q podman buildah runc debootstrap slirp4netns catatonit podman-compose >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q podman buildah runc debootstrap slirp4netns catatonit podman-compose >/dev/null; } \
    || skip "apt-get could not install the container tools"
fi
[ "$(id -u)" = 0 ] || skip "rootful podman needs root (rootless runc fails on this kind of machine)"
work=$(mktemp -d)
mkdir -p "$cache"
# crun (podman's default) fails on hybrid cgroups here; runc with these limits works.
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=8192:8192", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$work/containers.conf
names="sidx-ct-index sidx-ct-generator"
cleanup() {
  podman rm -f $names >/dev/null 2>&1 || true
  (cd deploy && SIDX_IMAGE=$image podman-compose -p sidx-ct down -v >/dev/null 2>&1) || true
  rm -rf "$work"
}
trap cleanup EXIT
podman info >/dev/null 2>&1 || skip "podman cannot start here: $(podman info 2>&1 | tail -1)"

# 2. The base image.
if ! podman image exists "$base"; then
  if [ ! -s "$cache/bookworm-minbase.tar" ]; then
    step "debootstrap --variant=minbase bookworm (cached in $cache)"
    rootfs=$work/rootfs
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
      || { tail -5 "$work/debootstrap.log"; skip "debootstrap failed"; }
    # This machine's extra CAs, so HTTPS inside image builds (cargo, pip) works.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
      chroot "$rootfs" update-ca-certificates >/dev/null
    fi
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
      "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -cf "$cache/bookworm-minbase.tar.part" . && mv "$cache/bookworm-minbase.tar.part" "$cache/bookworm-minbase.tar"
  fi
  step "podman import $base"
  podman import -q "$cache/bookworm-minbase.tar" "$base" >/dev/null
fi

# 3. The runtime image around this checkout's binary.
step "buildah bud $image (deploy/prebuilt.Dockerfile)"
ctx=$work/ctx
mkdir -p "$ctx/lib"
strip -o "$ctx/sidx" target/release/sidx
cp .ort/lib/libonnxruntime.so.1.31.1 .ort/lib/libonnxruntime_providers_shared.so "$ctx/lib/"
buildah bud -q --pull=never --build-arg RUNTIME_IMAGE="$base" -f deploy/prebuilt.Dockerfile -t "$image" "$ctx" >/dev/null
podman run --rm "$image" --version

# 4. Both services, hardened as the chart runs them.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ip=$(free_port) im=$(free_port) gp=$(free_port) gm=$(free_port)
token=ci-admin-token-$(date +%s%N)
mkdir -p "$work/index" "$work/mirror"
chown 65532:65532 "$work/index" "$work/mirror"
hardened=(--network host --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges --user 65532:65532)
step "index service (seeded from the fixture SIDs), generator service (mirroring it, fixture model)"
podman run -d --name sidx-ct-index "${hardened[@]}" \
  -v "$work/index:/var/lib/sidx/index" -v "$repo/tests/fixtures/generator:/seed:ro" \
  -e SIDX_ADMIN_TOKEN="$token" \
  "$image" serve index --index /var/lib/sidx/index --seed-sids /seed/sids.tsv \
  --addr "127.0.0.1:$ip" --metrics-addr "127.0.0.1:$im" --drain-timeout-s 5 >/dev/null
podman run -d --name sidx-ct-generator "${hardened[@]}" \
  -v "$work/mirror:/var/lib/sidx/index" -v "$repo/tests/fixtures/generator:/models:ro" \
  "$image" serve generator --index /var/lib/sidx/index --model /models/model_kv.onnx \
  --mirror-from "http://127.0.0.1:$ip" --addr "127.0.0.1:$gp" --metrics-addr "127.0.0.1:$gm" \
  --drain-timeout-s 5 >/dev/null
probe() {
  local deadline=$(($(date +%s) + 60))
  until target/release/sidx --log warn probe "$@" >"$work/probe.log" 2>&1; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
      cat "$work/probe.log"; podman logs --tail 20 sidx-ct-index; podman logs --tail 20 sidx-ct-generator
      echo "container test FAILED: sidx probe $* never passed" >&2; exit 1
    fi
    sleep 1
  done
  cat "$work/probe.log"
}
probe --index "127.0.0.1:$ip"
probe --index "127.0.0.1:$ip" --generator "127.0.0.1:$gp"
# (Output goes through files: with pipefail, `… | grep -q` fails when grep
# stops reading early and the writer gets SIGPIPE.)
curl -sf "http://127.0.0.1:$im/ready" >/dev/null && curl -sf "http://127.0.0.1:$gm/metrics" >"$work/metrics.txt" \
  && grep -q '^sidx_' "$work/metrics.txt" || { echo "container test FAILED: /ready or /metrics" >&2; exit 1; }

step "hardening, from inside"
[ "$(podman exec sidx-ct-index id -u)" = 65532 ] || { echo "container test FAILED: not uid 65532" >&2; exit 1; }
if podman exec sidx-ct-index sh -c 'touch /usr/local/bin/x' 2>/dev/null; then
  echo "container test FAILED: the root filesystem is writable" >&2; exit 1
fi
[ "$(podman inspect -f '{{.EffectiveCaps}}' sidx-ct-index)" = "[]" ] \
  || { echo "container test FAILED: capabilities $(podman inspect -f '{{.EffectiveCaps}}' sidx-ct-index)" >&2; exit 1; }

step "catalog update through the admin RPC, from outside"
head -1 tests/fixtures/generator/sids.tsv >"$work/upserts.tsv"
printf 'ct-new-item\t1:3 2:4 3:5\n' >>"$work/upserts.tsv"
sed -n 2p tests/fixtures/generator/sids.tsv | cut -f1 >"$work/deletes.txt"
target/release/sidx --log warn index apply --addr "127.0.0.1:$ip" --admin-token "$token" \
  --upsert-sids "$work/upserts.tsv" --deletes "$work/deletes.txt" | tee "$work/apply.json"
grep -q '"version":2' "$work/apply.json" || { echo "container test FAILED: the update did not publish version 2" >&2; exit 1; }
# The generator's mirror copies version 2 and the generator swaps it in.
deadline=$(($(date +%s) + 30))
until target/release/sidx --log warn probe --index "127.0.0.1:$ip" --generator "127.0.0.1:$gp" >"$work/probe.log" 2>&1 \
  && grep -q '^generator .*SERVING, version 2' "$work/probe.log"; do
  [ "$(date +%s)" -lt "$deadline" ] || { cat "$work/probe.log"; echo "container test FAILED: the generator did not follow to version 2" >&2; exit 1; }
  sleep 1
done
cat "$work/probe.log"

step "SIGTERM: drain and exit 0"
for c in $names; do
  podman stop -t 30 "$c" >/dev/null
  code=$(podman inspect -f '{{.State.ExitCode}}' "$c")
  podman logs "$c" >"$work/$c.log" 2>&1
  grep -q draining "$work/$c.log" || { tail -5 "$work/$c.log"; echo "container test FAILED: $c did not drain" >&2; exit 1; }
  [ "$code" = 0 ] || { podman logs --tail 20 "$c"; echo "container test FAILED: $c exited $code after SIGTERM" >&2; exit 1; }
  echo "$c: SIGTERM → drained, exit 0"
done
podman rm -f $names >/dev/null

# 5. Compose for one machine.
step "deploy/compose.yaml"
(cd deploy && SIDX_IMAGE=$image podman-compose -p sidx-ct up -d >"$work/compose.log" 2>&1) \
  || { cat "$work/compose.log"; echo "container test FAILED: podman-compose up" >&2; exit 1; }
probe --index 127.0.0.1:50051 --generator 127.0.0.1:50052   # the ports compose.yaml publishes
(cd deploy && SIDX_IMAGE=$image podman-compose -p sidx-ct down -v >/dev/null 2>&1)

# 6. The full multi-stage build, when its inputs changed.
toolchain=$(rustc --version | cut -d' ' -f2)
stamp=$(cat Dockerfile Cargo.lock | sha256sum | cut -c1-16)-$toolchain
if [ "${SIDX_FULL_IMAGE:-0}" = 1 ] || [ "$(cat "$cache/full-build.stamp" 2>/dev/null)" != "$stamp" ]; then
  builder=localhost/sidx-builder:$toolchain
  if ! podman image exists "$builder"; then
    step "builder image $builder: the base + this machine's Rust $toolchain (no rustup download here)"
    sysroot=$(rustc --print sysroot)
    mkdir -p "$work/builder/rust"
    cp -a "$sysroot/bin" "$sysroot/lib" "$work/builder/rust/"
    [ -d "$sysroot/libexec" ] && cp -a "$sysroot/libexec" "$work/builder/rust/"
    cat >"$work/builder/Dockerfile" <<EOF
FROM $base
COPY rust /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin CARGO_HOME=/usr/local/cargo
EOF
    buildah bud -q --pull=never -t "$builder" "$work/builder" >/dev/null
    rm -rf "$work/builder"
  fi
  step "full Dockerfile build (cargo inside; minutes)"
  t0=$(date +%s)
  buildah bud -q --pull=never --network host --build-arg BUILDER_IMAGE="$builder" \
    --build-arg RUNTIME_IMAGE="$base" -t localhost/sidx:full . >"$work/full.log" 2>&1 \
    || { tail -30 "$work/full.log"; echo "container test FAILED: the full Dockerfile build" >&2; exit 1; }
  echo "full image built in $(($(date +%s) - t0)) s"
  podman run --rm --network host --read-only --cap-drop ALL --user 65532:65532 localhost/sidx:full --version
  echo "$stamp" >"$cache/full-build.stamp"
else
  echo "full Dockerfile build: skipped, Dockerfile, Cargo.lock and Rust $toolchain unchanged since its last successful build here ($cache/full-build.stamp; SIDX_FULL_IMAGE=1 forces it)"
fi
step "passed"
