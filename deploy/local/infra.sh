#!/usr/bin/env bash
# All local infrastructure in one command.
#   deploy/local/infra.sh up       install.sh, then postgres.sh up, then pulsar.sh up
#   deploy/local/infra.sh down     pulsar.sh down, then postgres.sh down
#   deploy/local/infra.sh status   postgres.sh status and pulsar.sh status
# Connection strings: postgres://platform:platform@127.0.0.1:55432/<db>, pulsar://127.0.0.1:6650
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"

case "${1:-}" in
  up)
    t0=$(date +%s)
    "$HERE/install.sh"
    "$HERE/postgres.sh" up
    "$HERE/pulsar.sh" up
    infra_log "local infrastructure up in $(($(date +%s) - t0)) s"
    for db in $PG_DATABASES; do echo "$PG_URL_BASE/$db"; done
    echo "$PULSAR_URL  (admin $PULSAR_ADMIN_URL, namespace $PULSAR_TENANT/$PULSAR_NAMESPACE)"
    ;;
  down)
    rc=0
    "$HERE/pulsar.sh" down || rc=$?
    "$HERE/postgres.sh" down || rc=$?
    exit "$rc"
    ;;
  status)
    rc=0
    "$HERE/postgres.sh" status || rc=$?
    "$HERE/pulsar.sh" status || rc=$?
    exit "$rc"
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
