# syntax=docker/dockerfile:1
# sidx image: the `sidx` binary and the ONNX Runtime library, run as non-root.
#   docker build -t sidx:0.1.0 .                                   # CPU
#   docker build --build-arg FLAVOR=cuda -t sidx:0.1.0-cuda .      # CUDA execution provider (CUDA 13)
ARG FLAVOR=cpu

FROM rust:1.91-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG FLAVOR
RUN cargo build --release --locked \
 && scripts/fetch-onnxruntime.sh "$( [ "$FLAVOR" = cuda ] && echo gpu || echo cpu )" \
 && mkdir -p /out/lib \
 && cp target/release/sidx /out/ \
 && cp .ort/lib*/libonnxruntime*.so* /out/lib/ \
 && strip /out/sidx

FROM debian:bookworm-slim AS runtime-cpu
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 AS runtime-cuda

FROM runtime-${FLAVOR}
RUN if command -v apt-get >/dev/null; then apt-get update && apt-get install -y --no-install-recommends ca-certificates libstdc++6 && rm -rf /var/lib/apt/lists/*; fi
# The binary looks for the library in lib/ beside itself (../lib from /usr/local/bin).
COPY --from=build /out/sidx /usr/local/bin/sidx
COPY --from=build /out/lib/ /usr/local/lib/
USER 65532:65532
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/sidx"]
CMD ["--help"]
