# syntax=docker/dockerfile:1
#
# drawbridge container image.
#   docker build -t drawbridge:0.1.0 \
#     --build-arg REVISION="$(git rev-parse --short HEAD)" \
#     --build-arg SOURCE=https://git.example.com/you/drawbridge .
#   docker run --rm -p 8443:8443 -p 9090:9090 -v "$PWD/etc:/etc/drawbridge:ro" drawbridge:0.1.0
# with etc/drawbridge.toml (listen and admin addresses on 0.0.0.0) and the
# certificate files it names. The Helm chart and deploy/ pass their own
# --config path (/etc/drawbridge/config/drawbridge.toml).

# The source revision (.git is not in the build context): drawbridge_build_info
# and `drawbridge --version` report it, "unknown" when not given.
ARG REVISION=unknown
# Where the source lives, for the image's org.opencontainers.image.source label.
ARG SOURCE=""

# --- build: the dist profile (release, LTO, one codegen unit, stripped),
# exactly the versions in Cargo.lock.
FROM rust:1-bookworm AS build
ARG REVISION
WORKDIR /src
COPY . .
# The caches speed up rebuilds; the binary is copied out of the cached
# target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    DRAWBRIDGE_BUILD_REVISION="$REVISION" cargo build --profile dist --locked \
 && install -D -m 0755 target/dist/drawbridge /out/drawbridge

# --- runtime: glibc and libgcc only, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG REVISION
ARG SOURCE
LABEL org.opencontainers.image.title="drawbridge" \
      org.opencontainers.image.description="An auth gateway for websocket sync servers: TLS, provider webhooks, session-gated tunnels" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="$SOURCE"
COPY --from=build /out/drawbridge /usr/local/bin/drawbridge
# The image's "nonroot" user; the chart runs as the same uid.
USER 65532:65532
# gateway (TLS or plaintext), admin (/healthz /readyz /metrics)
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/drawbridge"]
CMD ["run", "--config", "/etc/drawbridge/drawbridge.toml"]
