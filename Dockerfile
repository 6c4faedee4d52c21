# syntax=docker/dockerfile:1
#
# canary as a container: multi-stage build, non-root runtime, state on a volume, HEALTHCHECK.
#
#   docker build -t canary .
#   docker run -d --name canary -p 127.0.0.1:9464:9464 \
#     -v canary-state:/var/lib/canary -v /etc/canary:/etc/canary:ro \
#     -v /var/lib/platform:/var/lib/platform:ro --stop-timeout 45 canary
#
# In a container the admin API must listen on all interfaces (CANARY__HTTP__BIND below); publish
# the port on 127.0.0.1 of the host, or put it behind your proxy, and set an admin token.

########## build ##########
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# jemalloc (canary's allocator) is built from its C source by its configure script and make,
# which the slim image lacks (it has cc).
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*

# 1. Dependencies only. Manifests plus stub targets, so this layer (the slow one) is rebuilt
#    only when Cargo.toml or Cargo.lock change, not on every source edit.
#    rust-toolchain.toml is deliberately not copied: the image's toolchain is the pinned one,
#    and the file would make rustup download clippy/rustfmt, which a release build never uses.
COPY Cargo.toml Cargo.lock ./
# jemalloc's compiled-in options (one arena): without this file the allocator builds with its
# defaults, and the L cycle's peak RSS grows by ~40 MB.
COPY .cargo .cargo
COPY invariants/Cargo.toml invariants/Cargo.toml
RUN mkdir -p src invariants/src invariants/benches tests \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs invariants/src/lib.rs tests/main.rs \
 && echo 'fn main() {}' > invariants/benches/evaluate.rs \
 && cargo build --release --locked --bin canary \
 && rm -rf src invariants/src

# 2. The real sources. `touch` because COPY keeps the context's mtimes, which may be older than
#    the stub build above: cargo would otherwise keep the stub binary.
COPY src src
COPY invariants/src invariants/src
COPY migrations migrations
COPY config config
# The status page's askama template is compiled in.
COPY templates templates
# The platform schema is compiled in (`canary demo` builds its platform from it).
COPY tests/fixtures tests/fixtures
RUN touch src/main.rs src/lib.rs invariants/src/lib.rs \
 && cargo build --release --locked --bin canary \
 && ./target/release/canary --version

########## runtime ##########
FROM debian:bookworm-slim

# ca-certificates: TLS to Slack (rustls reads the system roots) and rediss://.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system canary \
 && useradd --system --gid canary --home-dir /var/lib/canary --shell /usr/sbin/nologin canary \
 && mkdir -p /etc/canary /var/lib/canary \
 && chown canary:canary /var/lib/canary \
 && chmod 0750 /var/lib/canary

COPY --from=builder /src/target/release/canary /usr/local/bin/canary
COPY config/canary.yaml /etc/canary/canary.yaml

# Container defaults, all overridable with `-e` (env overrides the file, flags override env).
ENV CANARY_CONFIG=/etc/canary/canary.yaml \
    CANARY__HTTP__BIND=0.0.0.0:9464 \
    CANARY__STATE__PATH=/var/lib/canary/state.db \
    CANARY__LOG__FORMAT=json

USER canary:canary
WORKDIR /var/lib/canary
VOLUME ["/var/lib/canary"]
EXPOSE 9464

# No curl in the image: bash's /dev/tcp speaks just enough HTTP/1.0 for GET /healthz (no auth).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# SIGTERM (docker stop) → graceful stop within schedule.shutdown_timeout (30s by default):
# give docker more than that (`--stop-timeout 45`, compose `stop_grace_period: 45s`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["canary"]
CMD ["run"]
