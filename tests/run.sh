#!/usr/bin/env bash
# Runs every check and test of the platform, on a fresh machine or a warm one.
#
#   tests/run.sh
#
# Installs what the machine lacks (apt packages, grpcurl, buf, the Pulsar jars), starts PostgreSQL
# and Pulsar if they are not running (and stops, on exit, only what it started), then:
# cargo fmt --check, buf lint, cargo clippy -D warnings, one build, and every test (unit,
# integration against the real PostgreSQL, end-to-end against real processes and the real Pulsar
# broker, the relay chaos test, grpcurl). Test logs: $CARGO_TARGET_DIR/test-logs/ (target/ by default).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=../deploy/local/env.sh
source deploy/local/env.sh

step() { printf '\n==> %s\n' "$*" >&2; }
t_start=$(date +%s)

step "install prerequisites"
deploy/local/install.sh

# rust-toolchain.toml names 1.95.0; machines of this kind ship it as `stable`, so link it if absent.
if ! rustup run 1.95.0 rustc --version >/dev/null 2>&1; then
  rustup toolchain link 1.95.0 "$(rustup run stable rustc --print sysroot)"
fi

# A second, secured broker (TLS only, tokens, authorization) beside the plain one, with a state
# folder and ports of its own, for tests/tests/secure_broker.rs.
step "the container world (deploy/containers/setup.sh: podman, the stand-in base images, Docker Compose)"
deploy/containers/setup.sh

SECURE_STATE="$STATE_DIR/secure"
secure_pulsar() {
  env STATE_DIR="$SECURE_STATE" LOG_DIR="$SECURE_STATE/logs" PID_DIR="$SECURE_STATE/pids" \
    PULSAR_DATA_DIR="$SECURE_STATE/pulsar/data" PULSAR_TLS_DIR="$SECURE_STATE/pulsar/tls" \
    PULSAR_SECURE=1 PULSAR_URL= PULSAR_ADMIN_URL= PULSAR_BOOKIE_PORT="${SECURE_BOOKIE_PORT:-3182}" \
    deploy/local/pulsar.sh "$@"
}

started=()
cleanup() {
  local rc=$?
  # a cluster still starting in the background is stopped first, so `down` below sees all of it
  if [[ -n "${cluster_pid:-}" ]] && kill -0 "$cluster_pid" 2>/dev/null; then
    kill "$cluster_pid" 2>/dev/null || true
    wait "$cluster_pid" 2>/dev/null || true
  fi
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    step "stopping ${started[i]} (started by this run)"
    if [[ "${started[i]}" == secure-pulsar ]]; then secure_pulsar down || true; else "deploy/local/${started[i]}.sh" down || true; fi
  done
  printf '\n%s in %d s\n' "$([[ $rc == 0 ]] && echo 'tests/run.sh: all checks passed' || echo "tests/run.sh: FAILED (exit $rc)")" \
    "$(($(date +%s) - t_start))" >&2
  exit "$rc"
}
trap cleanup EXIT

step "start infrastructure"
if infra_port_in_use "$PG_PORT"; then infra_log "PostgreSQL already listening on $PG_PORT: using it"; else
  started+=(postgres); deploy/local/postgres.sh up
fi
if infra_port_in_use "$PULSAR_PORT"; then infra_log "Pulsar already listening on $PULSAR_PORT: using it"; else
  started+=(pulsar); deploy/local/pulsar.sh up
fi

if infra_port_in_use "$PULSAR_TLS_PORT"; then infra_log "secured Pulsar already listening on $PULSAR_TLS_PORT: using it"; else
  started+=(secure-pulsar); secure_pulsar up
fi
# The Pulsar cluster (ZooKeeper, 3 bookies, 2 brokers, a proxy) for tests/tests/cluster_failover.rs,
# started in the background while the checks and the build run; waited for before the tests.
cluster_pid=
if infra_port_in_use "$PULSAR_PROXY_PORT"; then infra_log "Pulsar cluster's proxy already listening on $PULSAR_PROXY_PORT: using it"; else
  started+=(pulsar-cluster)
  mkdir -p "$LOG_DIR"
  infra_log "starting the Pulsar cluster in the background (log $LOG_DIR/pulsar-cluster-up.log)"
  deploy/local/pulsar-cluster.sh up >"$LOG_DIR/pulsar-cluster-up.log" 2>&1 &
  cluster_pid=$!
fi
export TEST_CLUSTER_PULSAR_URL="pulsar://$PULSAR_HOST:$PULSAR_PROXY_PORT"
export TEST_CLUSTER_PULSAR_ADMIN_URL="http://$PULSAR_HOST:$PULSAR_PROXY_HTTP_PORT"
export TEST_SECURE_PULSAR_URL="pulsar+ssl://$PULSAR_HOST:$PULSAR_TLS_PORT"
export TEST_SECURE_PULSAR_ADMIN_URL="https://$PULSAR_HOST:$PULSAR_HTTPS_PORT"
export TEST_SECURE_PULSAR_TLS_DIR="$SECURE_STATE/pulsar/tls"

export TEST_POSTGRES_URL="$PG_URL_BASE/postgres"
export TEST_PULSAR_URL="$PULSAR_URL"
export PULSAR_TENANT PULSAR_NAMESPACE
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "cargo fmt --check"
cargo fmt --all -- --check

step "buf lint and buf breaking (against the committed baseline image proto/baseline.binpb)"
"$BUF_BIN" lint
"$BUF_BIN" breaking --against proto/baseline.binpb

step "deploy/static-checks.sh (Dockerfile, compose, Helm chart: no engine or cluster needed)"
deploy/static-checks.sh

step "cargo deny check licenses bans sources (deny.toml)"
"$CARGO_DENY_BIN" check --hide-inclusion-graph licenses bans sources

step "cargo machete (no crate declares a dependency it does not use)"
"$CARGO_MACHETE_BIN"

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "compile-time SQL: each crate's .sqlx/ matches its queries and its migrations (tests/sqlx.sh check)"
tests/sqlx.sh check

step "cargo build (binaries the end-to-end tests run)"
cargo build --workspace --bins --locked

if [[ -n "$cluster_pid" ]]; then
  step "waiting for the Pulsar cluster"
  if ! wait "$cluster_pid"; then
    tail -n 30 "$LOG_DIR/pulsar-cluster-up.log" >&2
    infra_die "the Pulsar cluster did not come up (log $LOG_DIR/pulsar-cluster-up.log)"
  fi
  tail -n 1 "$LOG_DIR/pulsar-cluster-up.log" >&2
fi

step "cargo test"
out="${CARGO_TARGET_DIR:-target}/test-output.txt"
set +e
cargo test --workspace --locked --no-fail-fast -- --nocapture 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "\n%d passed, %d failed\n", p, f }' "$out"
exit "$status"
