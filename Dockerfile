# driftwatch container image: build in a full Rust image, run in a slim Debian as a non-root user.
#
#   docker build -t driftwatch:local .
#   docker run --rm driftwatch:local check-config --offline
#
# librdkafka is compiled from source by the rdkafka crate (C toolchain, make, zlib) with OpenSSL
# (TLS and SASL/SCRAM), and jemalloc by tikv-jemalloc-sys (linked statically), so the runtime
# image needs only libssl3, zlib and the CA certificates.

FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p driftwatch-cli --bin driftwatch \
 && install -m 0755 target/release/driftwatch /usr/local/bin/driftwatch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 driftwatch \
 && useradd --system --uid 10001 --gid driftwatch --no-create-home --shell /usr/sbin/nologin driftwatch
COPY --from=builder /usr/local/bin/driftwatch /usr/local/bin/driftwatch
COPY deploy/driftwatch.example.toml /etc/driftwatch/driftwatch.toml
ENV DRIFTWATCH_CONFIG=/etc/driftwatch/driftwatch.toml \
    DRIFTWATCH_LOG=info
# The worker keeps no local state: nothing to write but logs (stderr).
USER 10001:10001
# /metrics, /healthz, /readyz
EXPOSE 9898
ENTRYPOINT ["driftwatch"]
CMD ["run", "--role", "join"]
