# syntax=docker/dockerfile:1
#
# drawbridge container image.
#   docker build -t drawbridge:0.1.0 .
#   docker run --rm -p 8443:8443 -p 9090:9090 -v "$PWD/etc:/etc/drawbridge:ro" drawbridge:0.1.0
# with etc/drawbridge.toml (listen and admin addresses on 0.0.0.0) and the
# certificate files it names. The Helm chart and deploy/ pass their own
# --config path (/etc/drawbridge/config/drawbridge.toml).

# --- build: the release binary, exactly the versions in Cargo.lock.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The caches speed up rebuilds; the binary is copied out of the cached
# target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -D -m 0755 target/release/drawbridge /out/drawbridge

# --- runtime: glibc and libgcc only, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/drawbridge /usr/local/bin/drawbridge
# The image's "nonroot" user; the chart runs as the same uid.
USER 65532:65532
# gateway (TLS or plaintext), admin (/healthz /readyz /metrics)
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/drawbridge"]
CMD ["run", "--config", "/etc/drawbridge/drawbridge.toml"]
