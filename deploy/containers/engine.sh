#!/usr/bin/env bash
# A Docker-compatible engine made of podman, for Docker Compose (a machine prepared by
# deploy/containers/setup.sh):
#
#   deploy/containers/engine.sh up                 # podman's Docker API on $PODMAN_SOCKET and the
#                                                  # health ticker, in the background
#   deploy/containers/engine.sh compose ARGS...    # Docker Compose $COMPOSE_VERSION against it
#                                                  # (starts it first if needed)
#   deploy/containers/engine.sh down               # stops both; containers are left as they are
#   deploy/containers/engine.sh status
#
# e.g. the whole platform in containers, the image packed from the binaries cargo built:
#   deploy/containers/setup.sh && deploy/containers/image.sh packed
#   deploy/containers/engine.sh compose -f deploy/compose/compose.yaml up -d --no-build --wait
#
# The health ticker: podman schedules container health checks with systemd timers, and these
# machines have no systemd, so without it every container would stay `starting` and Compose's
# `service_healthy` conditions would never hold. It runs `podman healthcheck run` for every
# running container that has a check, every $HEALTH_TICK seconds (each container's own interval
# is not followed), and stops by itself after $HEALTH_TICKER_MAX_SECONDS. The API service exits
# by itself after $PODMAN_SERVICE_IDLE seconds without a request; containers keep running.
# Builds through Compose (`up --build`) use the classic builder (DOCKER_BUILDKIT=0): BuildKit
# would start a moby/buildkit container pulled from Docker Hub.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

HEALTH_TICK="${HEALTH_TICK:-2}"
HEALTH_TICKER_MAX_SECONDS="${HEALTH_TICKER_MAX_SECONDS:-14400}"
PODMAN_SERVICE_IDLE="${PODMAN_SERVICE_IDLE:-900}"
SERVICE_PID="$CONTAINERS_STATE/podman-service.pid"
TICKER_PID="$CONTAINERS_STATE/health-ticker.pid"
mkdir -p "$CONTAINERS_STATE"

alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

service_answers() { curl -sf --max-time 2 --unix-socket "$PODMAN_SOCKET" http://d/_ping >/dev/null 2>&1; }

cmd_up() {
  command -v podman >/dev/null && [[ -x "$COMPOSE_BIN" ]] || infra_die "run deploy/containers/setup.sh first"
  if ! alive "$SERVICE_PID" || ! service_answers; then
    if alive "$SERVICE_PID"; then kill "$(cat "$SERVICE_PID")" 2>/dev/null || true; fi
    rm -f "$PODMAN_SOCKET"
    infra_log "podman system service on $PODMAN_SOCKET (log $CONTAINERS_STATE/podman-service.log)"
    setsid podman system service --time="$PODMAN_SERVICE_IDLE" "unix://$PODMAN_SOCKET" \
      </dev/null >>"$CONTAINERS_STATE/podman-service.log" 2>&1 &
    echo $! >"$SERVICE_PID"
    local i
    for ((i = 0; i < 100; i++)); do service_answers && break; sleep 0.1; done
    service_answers || infra_die "podman's API service did not answer within 10 s (log $CONTAINERS_STATE/podman-service.log)"
  fi
  if ! alive "$TICKER_PID"; then
    setsid "${BASH_SOURCE[0]}" ticker </dev/null >>"$CONTAINERS_STATE/health-ticker.log" 2>&1 &
    echo $! >"$TICKER_PID"
  fi
}

cmd_ticker() {
  local end=$((SECONDS + HEALTH_TICKER_MAX_SECONDS)) id status
  while ((SECONDS < end)); do
    while read -r id status; do
      [[ "$status" =~ \((healthy|unhealthy|starting)\) ]] || continue
      podman healthcheck run "$id" </dev/null >/dev/null 2>&1 || true
    done < <(podman ps --format '{{.ID}} {{.Status}}' 2>/dev/null || true)
    sleep "$HEALTH_TICK"
  done
  infra_log "health ticker: stopping after $HEALTH_TICKER_MAX_SECONDS s"
}

cmd_down() {
  local f
  for f in "$TICKER_PID" "$SERVICE_PID"; do
    if alive "$f"; then kill "$(cat "$f")" 2>/dev/null || true; fi
    rm -f "$f"
  done
  rm -f "$PODMAN_SOCKET"
}

cmd_status() {
  echo "podman:        $(podman --version 2>/dev/null || echo 'not installed')"
  echo "compose:       $([[ -x "$COMPOSE_BIN" ]] && "$COMPOSE_BIN" version --short || echo 'not built')"
  echo "API service:   $(alive "$SERVICE_PID" && service_answers && echo "running on $PODMAN_SOCKET" || echo stopped)"
  echo "health ticker: $(alive "$TICKER_PID" && echo running || echo stopped)"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  ticker) cmd_ticker ;;
  compose)
    shift
    cmd_up
    export DOCKER_CONFIG="$CONTAINERS_STATE/docker-config" DOCKER_BUILDKIT=0 COMPOSE_BAKE=false
    mkdir -p "$DOCKER_CONFIG"
    exec "$COMPOSE_BIN" "$@"
    ;;
  *) infra_die "usage: deploy/containers/engine.sh up | down | status | compose ARGS..." ;;
esac
