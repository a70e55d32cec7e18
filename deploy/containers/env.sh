# shellcheck shell=bash
# Shared settings of deploy/containers/*.sh (sourced). Everything can be overridden from the
# environment. Builds on deploy/local/env.sh (REPO_ROOT, STATE_DIR, AFFILIATE_CACHE_DIR, the
# Pulsar version and its cached jars, infra_log/infra_die).
# shellcheck source=../local/env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../local/env.sh"

CONTAINERS_DIR="$REPO_ROOT/deploy/containers"
# podman's settings for this machine kind (runc, cgroupfs, ulimits): given to every podman call
# and to the API service by the environment, never written under /etc
export CONTAINERS_CONF="${CONTAINERS_CONF:-$CONTAINERS_DIR/containers.conf}"

# downloads and builds kept between runs (Docker Compose, grpc-health-probe, image contexts)
CONTAINERS_CACHE="${CONTAINERS_CACHE:-$AFFILIATE_CACHE_DIR/containers}"
# the API service's socket, pid files and logs of this checkout
CONTAINERS_STATE="${CONTAINERS_STATE:-$STATE_DIR/containers}"

# Docker Compose v2, built from the Go module proxy (`go install` of the module is refused: its
# go.mod has exclude directives), run as a standalone binary against podman's Docker API
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
COMPOSE_BIN="${COMPOSE_BIN:-$CONTAINERS_CACHE/compose-$COMPOSE_VERSION/docker-compose}"
GRPC_HEALTH_PROBE_VERSION="${GRPC_HEALTH_PROBE_VERSION:-v0.4.62}"
GRPC_HEALTH_PROBE_BIN="${GRPC_HEALTH_PROBE_BIN:-$CONTAINERS_CACHE/grpc-health-probe-$GRPC_HEALTH_PROBE_VERSION/grpc-health-probe}"

PODMAN_SOCKET="${PODMAN_SOCKET:-$CONTAINERS_STATE/podman.sock}"
export DOCKER_HOST="unix://$PODMAN_SOCKET"   # compose talks to our podman, whatever the shell had

# The stand-ins for the base images our files name (deploy/containers/stand-ins), tagged with
# exactly those names; every build here runs with --pull=never.
STANDIN_DEBIAN="localhost/affiliate-standin/debian:bookworm"
RUST_IMAGE_NAME="${RUST_IMAGE_NAME:-docker.io/library/rust:1.95.0-bookworm}"
GOLANG_IMAGE_NAME="${GOLANG_IMAGE_NAME:-docker.io/library/golang:1.26-bookworm}"
DISTROLESS_IMAGE_NAME="${DISTROLESS_IMAGE_NAME:-gcr.io/distroless/cc-debian12:nonroot}"
POSTGRES_IMAGE_NAME="${POSTGRES_IMAGE_NAME:-docker.io/library/postgres:15-bookworm}"
PULSAR_IMAGE_NAME="${PULSAR_IMAGE_NAME:-docker.io/apachepulsar/pulsar:$PULSAR_VERSION}"

# the platform's image (compose.yaml's default AFFILIATE_PLATFORM_IMAGE is affiliate-platform:dev)
PLATFORM_IMAGE="${PLATFORM_IMAGE:-localhost/affiliate-platform:dev}"

export CONTAINERS_DIR CONTAINERS_CACHE CONTAINERS_STATE COMPOSE_VERSION COMPOSE_BIN \
  GRPC_HEALTH_PROBE_VERSION GRPC_HEALTH_PROBE_BIN PODMAN_SOCKET PLATFORM_IMAGE
