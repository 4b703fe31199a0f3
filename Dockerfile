# sidx image: the `sidx` binary and the ONNX Runtime library, run as non-root.
# The base images are build arguments, so the image also builds where no
# registry is reachable, from local bases (scripts/container-test.sh makes them):
#   docker build -t sidx:0.1.0 .                                         # CPU
#   docker build --build-arg FLAVOR=cuda \
#       --build-arg RUNTIME_IMAGE=docker.io/nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 \
#       -t sidx:0.1.0-cuda .                                              # CUDA execution provider (CUDA 13)
#   buildah bud --pull=never --network host \
#       --build-arg BUILDER_IMAGE=localhost/sidx-builder:1.95.0 \
#       --build-arg RUNTIME_IMAGE=localhost/sidx-base:bookworm -t localhost/sidx:0.1.0 .
# The builder needs Rust >= Cargo.toml's rust-version (1.92, from ort) and
# reaches crates.io and PyPI (the ONNX Runtime wheel, checked by SHA-256).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev binutils python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG FLAVOR=cpu
RUN cargo build --release --locked --bin sidx \
 && scripts/fetch-onnxruntime.sh "$( [ "$FLAVOR" = cuda ] && echo gpu || echo cpu )" \
 && mkdir -p /out/lib \
 && cp target/release/sidx /out/ \
 && cp .ort/lib*/libonnxruntime*.so* /out/lib/ \
 && strip /out/sidx

FROM ${RUNTIME_IMAGE}
# ONNX Runtime needs libstdc++; TLS clients need CA certificates. Installed
# only where the base lacks them.
RUN if ! ldconfig -p | grep -q 'libstdc++.so.6' || [ ! -d /etc/ssl/certs ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
      && rm -rf /var/lib/apt/lists/*; fi
# The binary looks for the library in lib/ beside itself (../lib from /usr/local/bin).
COPY --from=build /out/sidx /usr/local/bin/sidx
COPY --from=build /out/lib/ /usr/local/lib/
# Owned by the service user, so a fresh named volume mounted here (compose)
# starts writable by it.
RUN mkdir -p /var/lib/sidx/index && chown -R 65532:65532 /var/lib/sidx
USER 65532:65532
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/sidx"]
CMD ["--help"]
