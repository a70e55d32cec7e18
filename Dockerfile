# One image with every binary of the workspace; the command picks the process:
#
#   docker build -t affiliate-platform .
#   docker run --rm affiliate-platform campaign-service --help
#   docker run --rm affiliate-platform platform tail --help
#
# Binaries (in /usr/local/bin, on PATH): campaign-service, tracking-service, commission-service,
# payment-service, notification-service, analytics-service, webhook-service, relay, platform (the
# operator CLI), bff, trace-viewer, redirect (the redirect edge of tracking links).
# One image for all of them is the usual shape for a Rust workspace whose binaries share almost
# every dependency: one build, one scan, one tag to promote; deploy/compose and deploy/helm run
# each process from it by command. Configuration is environment variables only (every flag has
# one: `<binary> --help` lists them); the database migrations are compiled into each service
# (sqlx::migrate!) and run when it starts, so the image holds no other files.
#
# Runtime: distroless cc (glibc, libgcc, CA certificates; no shell, no package manager), as the
# numeric non-root user 65532, so Kubernetes' runAsNonRoot can verify it.
#
# No `# syntax=` line: it would make BuildKit fetch a frontend image from Docker Hub before every
# build, which fails on an offline or mirror-only builder; the frontend built into BuildKit
# (0.9 and later) has the cache mounts used below. The base images are build arguments, so a
# registry mirror is named rather than re-tagged, e.g.
#   docker build --build-arg RUST_IMAGE=mirror.example/library/rust \
#     --build-arg GO_IMAGE=mirror.example/library/golang \
#     --build-arg RUNTIME_IMAGE=mirror.example/distroless/cc-debian12:nonroot -t affiliate-platform .
# deploy/containers/ builds it with podman on a machine with no registry (stand-ins tagged with
# these names) and packs already-built binaries onto the runtime stage below for the tests.

ARG RUST_IMAGE=rust
ARG RUST_VERSION=1.95.0
ARG GO_IMAGE=golang
ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- build ----------------------------------------------------------------------------------
FROM ${RUST_IMAGE}:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
ARG RUST_VERSION
# Our .proto files are compiled by protox (proto/build.rs), but two dependencies run prost-build
# with the system protoc: the pulsar crate (PulsarApi.proto) and otlp-embedded (the trace
# viewer's OTLP protos). They import no well-known types, so protobuf-compiler alone is enough.
# (Not pinned to a Debian revision: a build-only tool, fixed by the Debian release above.)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
# rust-toolchain.toml pins the same version and also asks for rustfmt and clippy; naming the
# image's toolchain here keeps rustup from downloading components a release build never uses.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
# The binaries the image ships (deploy/static-checks.sh checks this list against `cargo
# metadata`: each is a [[bin]] of the workspace, and each one compose or Helm runs is here).
ARG BINARIES="campaign-service tracking-service commission-service payment-service notification-service analytics-service webhook-service relay platform bff trace-viewer redirect"
# The registry and the target dir are cache mounts (kept between builds, not in any layer), so
# the binaries are copied out of target/ within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && for bin in ${BINARIES}; do cp "target/release/${bin}" /out/; done

# ---- grpc-health-probe, for container health checks ----------------------------------------
# Kubernetes probes gRPC health natively (deploy/helm); Docker and Compose health checks run a
# command inside the container, and distroless has no shell or curl: this static binary (Go, about 18 MB)
# asks grpc.health.v1 of a service and exits 0 on SERVING (deploy/compose uses it).
FROM ${GO_IMAGE}:${GO_VERSION}-${DEBIAN_RELEASE} AS grpc-health-probe
ARG GRPC_HEALTH_PROBE_VERSION=v0.4.62
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOBIN=/out go install "github.com/grpc-ecosystem/grpc-health-probe@${GRPC_HEALTH_PROBE_VERSION}"

# ---- runtime --------------------------------------------------------------------------------
# (deploy/containers/image.sh packs binaries built outside onto exactly this stage: it copies
# the lines from here to the end, replacing only the two COPY --from lines)
# hadolint ignore=DL3006
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="affiliate-platform" \
      org.opencontainers.image.description="Affiliate platform: gRPC services, outbox relay, REST BFF, redirect edge, operator CLI, trace viewer" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/ /usr/local/bin/
COPY --from=grpc-health-probe /out/grpc-health-probe /usr/local/bin/grpc-health-probe
USER 65532:65532
# gRPC of the services (50051..50057 as deploy/local numbers them; each listens where GRPC_LISTEN
# says), the BFF's HTTP, the redirect edge's HTTP (REDIRECT_LISTEN), /metrics (METRICS_LISTEN),
# the trace viewer's OTLP and UI.
EXPOSE 50051 50052 50053 50054 50055 50056 50057 8088 8090 9100 4317 16686
CMD ["platform", "--help"]
