#!/usr/bin/env bash
# Our own PostgreSQL cluster for local development and integration tests (never the system one).
#
#   deploy/local/postgres.sh up       initdb if needed, start, wait until ready, create the databases
#   deploy/local/postgres.sh down     stop the cluster in $PG_DATA_DIR (pg_ctl stop -m fast)
#   deploy/local/postgres.sh crash    stop it as a crash would (pg_ctl stop -m immediate: no shutdown
#                                     checkpoint; the next `up` recovers from the WAL). For fault tests.
#   deploy/local/postgres.sh freeze   SIGSTOP the postmaster, then every backend: connections stay open
#                                     and nothing answers on them (fault tests)
#   deploy/local/postgres.sh thaw     SIGCONT the backends, then the postmaster (`up` also thaws first)
#   deploy/local/postgres.sh status   print state, databases and connection strings
#
# Data: $STATE_DIR/postgres/data; socket: $STATE_DIR/postgres/run; log: $STATE_DIR/logs/postgres.log
# (as root with a STATE_DIR the postgres OS user cannot reach: /var/tmp/affiliate-platform-pg/<hash>/).
# Listens on 127.0.0.1:$PG_PORT only (55432); scram-sha-256 everywhere; the bootstrap superuser is
# $PG_USER/$PG_PASSWORD (platform/platform), so tests can CREATE DATABASE per test.
# As root, initdb and the server run as the `postgres` OS user (initdb refuses root); as any other
# user they run as that user.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PG_LOG_FILE="$LOG_DIR/postgres.log"
PG_PID_FILE="$PID_DIR/postgres.pid"

[[ -n "$PG_BINDIR" && -x "$PG_BINDIR/initdb" ]] ||
  infra_die "PostgreSQL server binaries not found (PG_BINDIR='$PG_BINDIR'); run deploy/local/install.sh"

RUN_AS=()
if [[ "$(id -u)" == 0 ]]; then
  id -u postgres >/dev/null 2>&1 || infra_die "OS user 'postgres' missing; run deploy/local/install.sh"
  RUN_AS=(runuser -u postgres --)
fi

# run a PostgreSQL binary as the cluster owner, from / (the caller's cwd may be unreadable for it)
pg() { (cd / && "${RUN_AS[@]}" "$PG_BINDIR/$1" "${@:2}"); }
# client calls over TCP as the platform superuser
psql_platform() {
  PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"
}

# As root the cluster runs as the `postgres` OS user, which must traverse every parent directory
# of the data dir. A clone under a private directory (e.g. /root, mode 700) is not reachable: then
# the cluster lives in /var/tmp/affiliate-platform-pg/<hash of STATE_DIR>/ instead, with symlinks
# $STATE_DIR/postgres/cluster and $STATE_DIR/logs/postgres.log pointing at it. Deterministic, so
# `up`, `down` and `status` all find the same cluster.
relocate_if_unreachable() {
  ((${#RUN_AS[@]})) || return 0
  local parent base
  parent="$(dirname "$PG_DATA_DIR")"
  mkdir -p "$parent" "$LOG_DIR"
  if (cd / && "${RUN_AS[@]}" test -x "$parent" -a -x "$LOG_DIR"); then return 0; fi
  base="/var/tmp/affiliate-platform-pg/$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-12)"
  mkdir -p "$base"
  chmod 755 /var/tmp/affiliate-platform-pg "$base"
  PG_DATA_DIR="$base/data"
  PG_SOCKET_DIR="$base/run"
  PG_LOG_FILE="$base/postgres.log"
  ln -sfn "$base" "$parent/cluster"
  ln -sfn "$PG_LOG_FILE" "$LOG_DIR/postgres.log"
  infra_log "the 'postgres' OS user cannot reach $parent: cluster kept in $base (symlink $parent/cluster)"
}

is_running() { pg pg_ctl status -D "$PG_DATA_DIR" >/dev/null 2>&1; }

prepare_dirs() {
  mkdir -p "$STATE_DIR" "$LOG_DIR" "$PID_DIR" "$PG_DATA_DIR" "$PG_SOCKET_DIR"
  chmod 700 "$PG_DATA_DIR"
  chmod 755 "$PG_SOCKET_DIR"
  touch "$PG_LOG_FILE"
  if ((${#RUN_AS[@]})); then
    if [[ "$(stat -c %U "$PG_DATA_DIR")" != postgres ]]; then chown -R postgres:postgres "$PG_DATA_DIR"; fi
    chown postgres:postgres "$PG_SOCKET_DIR" "$PG_LOG_FILE"
    # the postgres user must be able to traverse every parent directory (e.g. not a repo under /root)
    local d
    for d in "$PG_DATA_DIR" "$PG_SOCKET_DIR" "$PG_LOG_FILE"; do
      (cd / && "${RUN_AS[@]}" test -w "$d") || infra_die "the 'postgres' OS user cannot write $d; \
point PG_DATA_DIR / PG_SOCKET_DIR / LOG_DIR at directories it can reach"
    done
  fi
}

init_cluster() {
  if [[ -f "$PG_DATA_DIR/PG_VERSION" ]]; then return 0; fi
  if [[ -n "$(ls -A "$PG_DATA_DIR")" ]]; then
    infra_log "removing incomplete data directory $PG_DATA_DIR (no PG_VERSION)"
    find "$PG_DATA_DIR" -mindepth 1 -delete
  fi
  local pwfile locale_opt=(--no-locale)
  pwfile="$(mktemp)"
  printf '%s\n' "$PG_PASSWORD" >"$pwfile"
  if ((${#RUN_AS[@]})); then chown postgres "$pwfile"; fi
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale_opt=(--locale=C.UTF-8); fi
  infra_log "initdb $PG_DATA_DIR (superuser $PG_USER, scram-sha-256)"
  if ! pg initdb -D "$PG_DATA_DIR" -U "$PG_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
    -E UTF8 "${locale_opt[@]}" >>"$PG_LOG_FILE" 2>&1; then
    rm -f "$pwfile"
    tail -n 20 "$PG_LOG_FILE" >&2
    infra_die "initdb failed (see $PG_LOG_FILE)"
  fi
  rm -f "$pwfile"
  echo "include_if_exists = 'affiliate-platform.conf'" >>"$PG_DATA_DIR/postgresql.conf"
}

write_conf() {
  # regenerated on every `up`, so overrides of PG_PORT etc. take effect on the next start
  local conf="$PG_DATA_DIR/affiliate-platform.conf" tmp
  tmp="$(mktemp)"
  cat >"$tmp" <<EOF
# written by deploy/local/postgres.sh on every 'up'; edit that script, not this file
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = $PG_MAX_CONNECTIONS
password_encryption = 'scram-sha-256'
EOF
  grep -q "include_if_exists = 'affiliate-platform.conf'" "$PG_DATA_DIR/postgresql.conf" ||
    echo "include_if_exists = 'affiliate-platform.conf'" >>"$PG_DATA_DIR/postgresql.conf"
  cp "$tmp" "$conf"
  rm -f "$tmp"
  if ((${#RUN_AS[@]})); then chown postgres:postgres "$conf"; fi
  chmod 600 "$conf"
}

write_pid() { head -n 1 "$PG_DATA_DIR/postmaster.pid" >"$PG_PID_FILE" 2>/dev/null || true; }

wait_ready() {
  local i
  for ((i = 0; i < 60; i++)); do
    if "$PG_BINDIR/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -t 2; then return 0; fi
    sleep 1
  done
  tail -n 30 "$PG_LOG_FILE" >&2
  infra_die "PostgreSQL did not become ready on $PG_HOST:$PG_PORT within 60 s (see $PG_LOG_FILE)"
}

create_databases() {
  local db
  for db in $PG_DATABASES; do
    if [[ "$(psql_platform -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" == 1 ]]; then
      continue
    fi
    infra_log "creating database $db"
    psql_platform -d postgres -c "CREATE DATABASE \"$db\" OWNER \"$PG_USER\""
  done
}

cmd_up() {
  prepare_dirs
  init_cluster
  write_conf
  # a server left frozen (a fault test that was interrupted) is continued, never waited for
  local frozen
  frozen="$(postmaster_pid)"
  if [[ -n "$frozen" ]] && infra_stopped "$frozen"; then cmd_thaw; fi
  if is_running; then
    infra_log "PostgreSQL already running (data $PG_DATA_DIR)"
  else
    if infra_port_in_use "$PG_PORT"; then
      ss -Hltnp "sport = :$PG_PORT" >&2 || true
      infra_die "port $PG_PORT is already in use by another process (set PG_PORT to use another one)"
    fi
    infra_log "starting PostgreSQL on $PG_HOST:$PG_PORT (log $PG_LOG_FILE)"
    if ! pg pg_ctl start -D "$PG_DATA_DIR" -l "$PG_LOG_FILE" -w -t 60 -s; then
      tail -n 30 "$PG_LOG_FILE" >&2
      infra_die "pg_ctl start failed (see $PG_LOG_FILE)"
    fi
  fi
  write_pid
  wait_ready
  create_databases
  infra_log "PostgreSQL ready: $PG_URL_BASE/<db> for db in: $PG_DATABASES"
}

cmd_down() {
  if [[ ! -f "$PG_DATA_DIR/PG_VERSION" ]]; then
    infra_log "PostgreSQL: no cluster in $PG_DATA_DIR"
  elif is_running; then
    infra_log "stopping PostgreSQL (data $PG_DATA_DIR)"
    pg pg_ctl stop -D "$PG_DATA_DIR" -m fast -w -t 60 -s
  else
    infra_log "PostgreSQL not running"
  fi
  rm -f "$PG_PID_FILE"
}

postmaster_pid() { head -n 1 "$PG_DATA_DIR/postmaster.pid" 2>/dev/null || true; }

cmd_freeze() {
  is_running || infra_die "PostgreSQL is not running (data $PG_DATA_DIR): nothing to freeze"
  local pid
  pid="$(postmaster_pid)"
  # the postmaster first, so that it forks no new backend while they are being stopped
  kill -STOP "$pid"
  local children
  children="$(pgrep -P "$pid" | tr '\n' ' ' || true)"
  # shellcheck disable=SC2086
  [[ -z "$children" ]] || kill -STOP $children
  infra_log "froze PostgreSQL with SIGSTOP: postmaster $pid and its processes $children"
}

cmd_thaw() {
  local pid
  pid="$(postmaster_pid)"
  [[ -n "$pid" ]] || infra_die "PostgreSQL has no postmaster.pid in $PG_DATA_DIR: nothing to thaw"
  local children
  children="$(pgrep -P "$pid" | tr '\n' ' ' || true)"
  # shellcheck disable=SC2086
  [[ -z "$children" ]] || kill -CONT $children
  kill -CONT "$pid"
  infra_log "thawed PostgreSQL with SIGCONT: postmaster $pid and its processes $children"
}

cmd_crash() {
  is_running || infra_die "PostgreSQL is not running (data $PG_DATA_DIR): nothing to crash"
  infra_log "stopping PostgreSQL as a crash would (pg_ctl stop -m immediate)"
  pg pg_ctl stop -D "$PG_DATA_DIR" -m immediate -w -t 60 -s
  rm -f "$PG_PID_FILE"
}

cmd_status() {
  if [[ ! -f "$PG_DATA_DIR/PG_VERSION" ]]; then
    echo "postgres: not initialised ($PG_DATA_DIR)"
    return 3
  fi
  if ! is_running; then
    echo "postgres: stopped (data $PG_DATA_DIR)"
    return 3
  fi
  echo "postgres: running, pid $(head -n 1 "$PG_DATA_DIR/postmaster.pid"), data $PG_DATA_DIR, log $PG_LOG_FILE"
  "$PG_BINDIR/pg_isready" -h "$PG_HOST" -p "$PG_PORT" || true
  local db
  for db in $PG_DATABASES; do
    if psql_platform -d "$db" -tAc 'SELECT 1' >/dev/null 2>&1; then
      echo "  $PG_URL_BASE/$db  ok"
    else
      echo "  $PG_URL_BASE/$db  NOT REACHABLE"
    fi
  done
}

relocate_if_unreachable

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  crash) cmd_crash ;;
  freeze) cmd_freeze ;;
  thaw) cmd_thaw ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|crash|freeze|thaw|status" >&2; exit 2 ;;
esac
