#!/usr/bin/env bash
# All local infrastructure in one command.
#   deploy/local/infra.sh up       install.sh, then postgres.sh up, then pulsar.sh up
#   deploy/local/infra.sh down     pulsar.sh down, then postgres.sh down
#   deploy/local/infra.sh status   postgres.sh status and pulsar.sh status
# With PULSAR_CLUSTER=1, pulsar-cluster.sh (ZooKeeper, 3 bookies, 2 brokers, a proxy) instead of
# the standalone broker of pulsar.sh.
# Connection strings: postgres://platform:platform@127.0.0.1:55432/<db>, pulsar://127.0.0.1:6650
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
PULSAR_SCRIPT="$HERE/pulsar.sh"
if [[ "$PULSAR_CLUSTER" == 1 ]]; then PULSAR_SCRIPT="$HERE/pulsar-cluster.sh"; fi

case "${1:-}" in
  up)
    t0=$(date +%s)
    "$HERE/install.sh"
    "$HERE/postgres.sh" up
    "$PULSAR_SCRIPT" up
    infra_log "local infrastructure up in $(($(date +%s) - t0)) s"
    for db in $PG_DATABASES; do echo "$PG_URL_BASE/$db"; done
    echo "$PULSAR_URL  (admin $PULSAR_ADMIN_URL, namespace $PULSAR_TENANT/$PULSAR_NAMESPACE)"
    ;;
  down)
    rc=0
    "$PULSAR_SCRIPT" down || rc=$?
    "$HERE/postgres.sh" down || rc=$?
    exit "$rc"
    ;;
  status)
    rc=0
    "$HERE/postgres.sh" status || rc=$?
    "$PULSAR_SCRIPT" status || rc=$?
    exit "$rc"
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
