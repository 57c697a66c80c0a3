# syntax=docker/dockerfile:1
#
# One image, two binaries (DESIGN.md): `tributary` (capture, consumer, query,
# auth, migrate, dlq, dev) is the entrypoint, so the operator's Deployments
# pass only a subcommand as args; the operator's own Deployment (the Helm
# chart) runs `tributary-operator run`.
#
#   docker build -t ghcr.io/tributary-dev/tributary:0.1.0 \
#     --build-arg REVISION=$(git rev-parse HEAD) .
#
# The runtime stage is distroless (glibc, libgcc, OpenSSL, CA certificates,
# tzdata; no shell, no package manager) and runs as the numeric non-root user
# 65532, the user the operator's pods and the chart declare.

ARG RUST_VERSION=1.95
# The build and runtime stages share a Debian release, so the binaries find
# the glibc and OpenSSL they were linked against.
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# rdkafka's `cmake-build` compiles librdkafka: the same packages a local
# build installs, from the same script.
COPY infrastructure/install-build-deps.sh infrastructure/install-build-deps.sh
RUN infrastructure/install-build-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# The registry and target directory are build caches, not image layers, so
# a source change recompiles only what it touches.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tributary-cli -p tributary-operator \
 && install -D -m 0755 -t /out target/release/tributary target/release/tributary-operator

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tributary" \
      org.opencontainers.image.description="Tributary: self-hosted product analytics on Kubernetes (capture, consumer, query, auth and the operator)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://example.invalid/tributary" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Tributary developers"
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tributary"]
CMD ["--help"]
