# The sidx image around a binary built outside it (the CI's own release
# build): the same runtime stage as ../Dockerfile, without the builder.
# Context: a folder holding sidx and lib/libonnxruntime*.so* (scripts/container-test.sh).
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${RUNTIME_IMAGE}
RUN if ! ldconfig -p | grep -q 'libstdc++.so.6' || [ ! -d /etc/ssl/certs ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
      && rm -rf /var/lib/apt/lists/*; fi
COPY sidx /usr/local/bin/sidx
COPY lib/ /usr/local/lib/
# Owned by the service user, so a fresh named volume mounted here (compose)
# starts writable by it.
RUN mkdir -p /var/lib/sidx/index && chown -R 65532:65532 /var/lib/sidx
USER 65532:65532
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/sidx"]
CMD ["--help"]
