#!/usr/bin/env bash
# The postgres stand-in's entrypoint (see the Containerfile beside it), written for this project:
# the interface of the official image's docker-entrypoint.sh that deploy/compose uses.
#   - run as root: make PGDATA and the socket dir the postgres user's, then re-run as postgres
#   - an empty PGDATA: initdb with POSTGRES_USER / POSTGRES_PASSWORD (required unless
#     POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_INITDB_ARGS; listen_addresses '*', any host
#     with POSTGRES_HOST_AUTH_METHOD (scram-sha-256); a server on the socket only runs
#     POSTGRES_DB's creation and /docker-entrypoint-initdb.d/* (*.sql with psql, *.sh executed
#     or sourced), then stops
#   - then exec the command (postgres [args]; an argument starting with '-' means postgres)
set -Eeuo pipefail

if [[ "${1:0:1}" == - ]]; then set -- postgres "$@"; fi
if [[ "${1:-}" != postgres ]]; then exec "$@"; fi

if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

log() { printf 'docker-entrypoint: %s\n' "$*" >&2; }

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [[ -z "${POSTGRES_PASSWORD:-}" && "$auth" != trust ]]; then
    log "POSTGRES_PASSWORD is not set (set it, or POSTGRES_HOST_AUTH_METHOD=trust)"
    exit 1
  fi
  log "initialising $PGDATA for user $user"
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as upstream
  initdb --username="$user" ${POSTGRES_PASSWORD:+--pwfile="$pwfile"} ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # the first-start server: socket only, so nothing reaches it over TCP before init is done
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$user" --dbname postgres)
  if [[ "$db" != postgres ]]; then
    "${psql[@]}" --set db="$db" <<<'create database :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    [[ -e "$f" ]] || continue
    case "$f" in
      *.sh)
        if [[ -x "$f" ]]; then log "running $f"; "$f"; else log "sourcing $f"; # shellcheck disable=SC1090
          source "$f"; fi ;;
      *.sql) log "running $f"; "${psql[@]}" --dbname "$db" -f "$f" ;;
      *) log "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  log "init done"
fi

exec "$@"
