#!/usr/bin/env bash
# Shared settings for the local infrastructure scripts in deploy/local/.
#
#   source deploy/local/env.sh         # in your shell: defines the variables and extends PATH
#   eval "$(deploy/local/env.sh)"      # same, for shells that prefer eval; prints `export` lines
#
# Every value can be overridden from the environment (export it before sourcing / running a script).
# This file deliberately does NOT `set -euo pipefail` when sourced, so that sourcing it into an
# interactive shell cannot make that shell exit on the next failing command; the scripts that
# source it set those options themselves.

# ---- locations ------------------------------------------------------------------------------
LOCAL_INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="${REPO_ROOT:-$(cd "$LOCAL_INFRA_DIR/../.." && pwd)}"

# The project's git-ignored state folder: data dirs, logs, pid files. `rm -rf .state` resets everything.
STATE_DIR="${STATE_DIR:-$REPO_ROOT/.state}"
LOG_DIR="${LOG_DIR:-$STATE_DIR/logs}"
PID_DIR="${PID_DIR:-$STATE_DIR/pids}"

# Machine-wide cache for things that should survive fresh clones on the same machine
# (the resolved Pulsar jars per version, the npm prefix holding buf).
AFFILIATE_CACHE_DIR="${AFFILIATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/affiliate-platform}"

# ---- PostgreSQL -----------------------------------------------------------------------------
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-55432}"           # non-default: never collides with a system PostgreSQL on 5432
PG_USER="${PG_USER:-platform}"
PG_PASSWORD="${PG_PASSWORD:-platform}"
PG_DATABASES="${PG_DATABASES:-campaign tracking commission payment notification analytics webhook}"
PG_MAX_CONNECTIONS="${PG_MAX_CONNECTIONS:-300}"
PG_DATA_DIR="${PG_DATA_DIR:-$STATE_DIR/postgres/data}"
PG_SOCKET_DIR="${PG_SOCKET_DIR:-$STATE_DIR/postgres/run}"
if [[ -z "${PG_BINDIR:-}" ]]; then
  # newest server installed from Debian's packages (/usr/lib/postgresql/<major>/bin)
  PG_BINDIR="$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -n 1 || true)"
  if [[ -z "$PG_BINDIR" ]] && command -v pg_ctl >/dev/null 2>&1; then
    PG_BINDIR="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
  fi
fi

# ---- Apache Pulsar --------------------------------------------------------------------------
# Newest 4.0.x LTS patch whose WHOLE dependency closure resolves from the Maven Central reachable
# here (checked with mvn on 2026-11-23: 4.0.8's pulsar-broker resolves but its jetcd-core-shaded and
# pulsar-opentelemetry 4.0.8 jars do not; 4.0.9 to 4.0.14 do not resolve at all).
PULSAR_VERSION="${PULSAR_VERSION:-4.0.7}"
PULSAR_HOST="${PULSAR_HOST:-127.0.0.1}"
PULSAR_PORT="${PULSAR_PORT:-6650}"
PULSAR_HTTP_PORT="${PULSAR_HTTP_PORT:-8080}"
# The bookie's own port: fixed, because it is the bookie's identity in its cookie and in every
# ledger (a data dir is tied to the port it was created with; pulsar.sh reads it back from the cookie).
PULSAR_BOOKIE_PORT="${PULSAR_BOOKIE_PORT:-3181}"
# PULSAR_SECURE=1: the broker speaks TLS only (binary $PULSAR_TLS_PORT, admin $PULSAR_HTTPS_PORT) and
# requires a token, with authorization on; its CA, keys and tokens live in $PULSAR_TLS_DIR (mode 600).
PULSAR_SECURE="${PULSAR_SECURE:-0}"
PULSAR_TLS_PORT="${PULSAR_TLS_PORT:-6651}"
PULSAR_HTTPS_PORT="${PULSAR_HTTPS_PORT:-8443}"
PULSAR_TLS_DIR="${PULSAR_TLS_DIR:-$STATE_DIR/pulsar/tls}"
# The role the platform's processes use (a token of its own, produce and consume on the namespace).
PULSAR_APP_ROLE="${PULSAR_APP_ROLE:-platform}"
PULSAR_TENANT="${PULSAR_TENANT:-affiliate}"
PULSAR_NAMESPACE="${PULSAR_NAMESPACE:-platform}"
# The standalone broker's cluster name (the tenant's allowed cluster).
PULSAR_CLUSTER_NAME="${PULSAR_CLUSTER_NAME:-standalone}"
# PULSAR_CLUSTER=1: the processes and scripts use the local cluster of pulsar-cluster.sh (ZooKeeper,
# 3 bookies, 2 brokers), through its Pulsar proxy, instead of the standalone broker.
PULSAR_CLUSTER="${PULSAR_CLUSTER:-0}"
PULSAR_CLUSTER_DIR="${PULSAR_CLUSTER_DIR:-$STATE_DIR/pulsar-cluster}"
PULSAR_CLUSTER_ZK_PORT="${PULSAR_CLUSTER_ZK_PORT:-2191}"
PULSAR_CLUSTER_BOOKIE_PORTS="${PULSAR_CLUSTER_BOOKIE_PORTS:-3191 3192 3193}"
PULSAR_CLUSTER_BROKER_PORTS="${PULSAR_CLUSTER_BROKER_PORTS:-6660 6661}"
PULSAR_CLUSTER_BROKER_HTTP_PORTS="${PULSAR_CLUSTER_BROKER_HTTP_PORTS:-8090 8091}"
PULSAR_PROXY_PORT="${PULSAR_PROXY_PORT:-6670}"
PULSAR_PROXY_HTTP_PORT="${PULSAR_PROXY_HTTP_PORT:-8100}"
# How long a dead broker keeps its topics: its metadata session's timeout (Pulsar's default is
# 30 s, which made a failover stall about 50 s; ZooKeeper clamps it to 2..20 ticks of 2 s).
PULSAR_CLUSTER_SESSION_TIMEOUT_MS="${PULSAR_CLUSTER_SESSION_TIMEOUT_MS:-5000}"
# pulsar-proxy is not served at 4.0.7 by the registry this machine reaches (404); the nearest
# patch release that is runs on the 4.0.7 closure (pulsar/proxy-pom.xml).
PULSAR_PROXY_VERSION="${PULSAR_PROXY_VERSION:-4.0.6}"
PULSAR_READY_TIMEOUT="${PULSAR_READY_TIMEOUT:-180}"
# Namespace retention (7 days or 1 GiB): dead letters and replays survive without a subscription.
_default_retention='{"retentionTimeInMinutes":10080,"retentionSizeInMB":1024}'
PULSAR_RETENTION="${PULSAR_RETENTION:-$_default_retention}"
# The namespace's schema compatibility strategy for the envelopes' PROTOBUF_NATIVE schemas.
PULSAR_SCHEMA_COMPATIBILITY="${PULSAR_SCHEMA_COMPATIBILITY:-FULL_TRANSITIVE}"
unset _default_retention
PULSAR_MEM_OPTS="${PULSAR_MEM_OPTS:--Xms512m -Xmx512m -XX:MaxDirectMemorySize=512m}"
PULSAR_GC_OPTS="${PULSAR_GC_OPTS:--XX:+UseG1GC}"
PULSAR_DATA_DIR="${PULSAR_DATA_DIR:-$STATE_DIR/pulsar/data}"
PULSAR_HOME="${PULSAR_HOME:-$AFFILIATE_CACHE_DIR/pulsar/$PULSAR_VERSION}"   # holds lib/ (the jars)
PULSAR_LIB_DIR="${PULSAR_LIB_DIR:-$PULSAR_HOME/lib}"
# Maven settings used to resolve the jars (routes every repository to Central; see pulsar/settings.xml).
# Set it to the empty string to use your own ~/.m2/settings.xml instead.
PULSAR_MVN_SETTINGS="${PULSAR_MVN_SETTINGS-$LOCAL_INFRA_DIR/pulsar/settings.xml}"

# ---- developer tools ------------------------------------------------------------------------
GO_BIN_DIR="${GO_BIN_DIR:-$HOME/go/bin}"                                  # go install target (grpcurl)
NPM_TOOLS_PREFIX="${NPM_TOOLS_PREFIX:-$AFFILIATE_CACHE_DIR/npm-tools}"   # npm install --prefix (buf)
BUF_BIN_DIR="${BUF_BIN_DIR:-$NPM_TOOLS_PREFIX/node_modules/.bin}"
BUF_BIN="${BUF_BIN:-$BUF_BIN_DIR/buf}"
# schemathesis (contract fuzzing of the BFF's OpenAPI document), in a Python venv of its own
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
PY_TOOLS_VENV="${PY_TOOLS_VENV:-$AFFILIATE_CACHE_DIR/venv}"
SCHEMATHESIS_BIN="${SCHEMATHESIS_BIN:-$PY_TOOLS_VENV/bin/schemathesis}"
# the official Python Pulsar client and protobuf, in the same venv: the other-language client test
# (tests/tests/schema_registry.rs runs tests/python/read_typed_events.py with it)
PULSAR_CLIENT_PY_VERSION="${PULSAR_CLIENT_PY_VERSION:-3.13.0}"
PROTOBUF_PY_VERSION="${PROTOBUF_PY_VERSION:-7.36.2}"
# the official Standard Webhooks library, in the same venv: the tests' partner receiver
# (tests/python/webhook_receiver.py, run by tests/tests/webhooks.rs) verifies with it
STANDARDWEBHOOKS_PY_VERSION="${STANDARDWEBHOOKS_PY_VERSION:-1.1.0}"
PY_TOOLS_PYTHON="${PY_TOOLS_PYTHON:-$PY_TOOLS_VENV/bin/python}"

# cargo-deny (licenses, bans, sources of every dependency), installed with `cargo install --root`
CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"
CARGO_TOOLS_ROOT="${CARGO_TOOLS_ROOT:-$AFFILIATE_CACHE_DIR/cargo-tools}"
CARGO_DENY_BIN="${CARGO_DENY_BIN:-$CARGO_TOOLS_ROOT/bin/cargo-deny}"
# cargo-machete (dependencies a crate declares and never uses), the same way
CARGO_MACHETE_VERSION="${CARGO_MACHETE_VERSION:-0.9.2}"
CARGO_MACHETE_BIN="${CARGO_MACHETE_BIN:-$CARGO_TOOLS_ROOT/bin/cargo-machete}"
# sqlx-cli (tests/sqlx.sh: each crate's .sqlx/ query data, prepared and checked), the same way
SQLX_CLI_VERSION="${SQLX_CLI_VERSION:-0.9.0}"
SQLX_BIN="${SQLX_BIN:-$CARGO_TOOLS_ROOT/bin/sqlx}"

# ---- connection strings ---------------------------------------------------------------------
# DATABASE_URL-style strings per database: postgres://platform:platform@127.0.0.1:55432/<db>
PG_URL_BASE="postgres://${PG_USER}:${PG_PASSWORD}@${PG_HOST}:${PG_PORT}"
if [[ "$PULSAR_SECURE" == 1 ]]; then
  PULSAR_URL="${PULSAR_URL:-pulsar+ssl://${PULSAR_HOST}:${PULSAR_TLS_PORT}}"
  PULSAR_ADMIN_URL="${PULSAR_ADMIN_URL:-https://${PULSAR_HOST}:${PULSAR_HTTPS_PORT}}"
fi
if [[ "$PULSAR_CLUSTER" == 1 ]]; then
  PULSAR_URL="${PULSAR_URL:-pulsar://${PULSAR_HOST}:${PULSAR_PROXY_PORT}}"
  PULSAR_ADMIN_URL="${PULSAR_ADMIN_URL:-http://${PULSAR_HOST}:${PULSAR_PROXY_HTTP_PORT}}"
fi
PULSAR_URL="${PULSAR_URL:-pulsar://${PULSAR_HOST}:${PULSAR_PORT}}"
PULSAR_ADMIN_URL="${PULSAR_ADMIN_URL:-http://${PULSAR_HOST}:${PULSAR_HTTP_PORT}}"

# ---- PATH -----------------------------------------------------------------------------------
_affiliate_path_add() {
  case ":$PATH:" in *":$1:"*) ;; *) PATH="$1:$PATH" ;; esac
}
# Go's official tarball lives in /usr/local/go; a shell that did not read a profile may lack it.
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then _affiliate_path_add /usr/local/go/bin; fi
_affiliate_path_add "$BUF_BIN_DIR"
_affiliate_path_add "$GO_BIN_DIR"
unset -f _affiliate_path_add

export REPO_ROOT STATE_DIR LOG_DIR PID_DIR AFFILIATE_CACHE_DIR \
  PG_HOST PG_PORT PG_USER PG_PASSWORD PG_DATABASES PG_MAX_CONNECTIONS PG_DATA_DIR PG_SOCKET_DIR PG_BINDIR \
  PULSAR_VERSION PULSAR_HOST PULSAR_PORT PULSAR_HTTP_PORT PULSAR_BOOKIE_PORT PULSAR_SECURE PULSAR_TLS_PORT PULSAR_HTTPS_PORT PULSAR_TLS_DIR PULSAR_APP_ROLE PULSAR_TENANT PULSAR_NAMESPACE PULSAR_CLUSTER_NAME PULSAR_CLUSTER \
  PULSAR_CLUSTER_DIR PULSAR_CLUSTER_ZK_PORT PULSAR_CLUSTER_BOOKIE_PORTS PULSAR_CLUSTER_BROKER_PORTS PULSAR_CLUSTER_BROKER_HTTP_PORTS \
  PULSAR_PROXY_PORT PULSAR_PROXY_HTTP_PORT PULSAR_CLUSTER_SESSION_TIMEOUT_MS PULSAR_PROXY_VERSION \
  PULSAR_READY_TIMEOUT PULSAR_RETENTION PULSAR_SCHEMA_COMPATIBILITY PULSAR_MEM_OPTS PULSAR_GC_OPTS PULSAR_DATA_DIR PULSAR_HOME PULSAR_LIB_DIR \
  PULSAR_MVN_SETTINGS GO_BIN_DIR NPM_TOOLS_PREFIX BUF_BIN_DIR BUF_BIN SCHEMATHESIS_VERSION PY_TOOLS_VENV SCHEMATHESIS_BIN PULSAR_CLIENT_PY_VERSION PROTOBUF_PY_VERSION PY_TOOLS_PYTHON CARGO_DENY_VERSION CARGO_TOOLS_ROOT CARGO_DENY_BIN CARGO_MACHETE_VERSION CARGO_MACHETE_BIN SQLX_CLI_VERSION SQLX_BIN PG_URL_BASE PULSAR_URL PULSAR_ADMIN_URL PATH

# ---- helpers for the scripts ----------------------------------------------------------------
infra_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
infra_die() { infra_log "ERROR: $*"; exit 1; }
# true if something listens on 127.0.0.1/0.0.0.0/[::] port $1 (TCP)
# whether process $1 is stopped (SIGSTOP: state T in /proc/<pid>/stat)
infra_stopped() { [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == T ]]; }
infra_port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# Executed instead of sourced: print the settings as `export` lines (for eval) and the URLs.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  for v in REPO_ROOT STATE_DIR LOG_DIR PID_DIR AFFILIATE_CACHE_DIR PG_HOST PG_PORT PG_USER PG_PASSWORD \
    PG_DATABASES PG_DATA_DIR PG_SOCKET_DIR PG_BINDIR PULSAR_VERSION PULSAR_HOST PULSAR_PORT PULSAR_HTTP_PORT \
    PULSAR_TENANT PULSAR_NAMESPACE PULSAR_DATA_DIR PULSAR_LIB_DIR GO_BIN_DIR BUF_BIN PULSAR_URL PULSAR_ADMIN_URL PATH; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
  for db in $PG_DATABASES; do printf '# %s/%s\n' "$PG_URL_BASE" "$db"; done
fi
