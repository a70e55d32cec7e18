#!/usr/bin/env bash
# The compile-time-checked SQL of every crate: each crate that runs SQL keeps the description of
# its queries in its own `.sqlx/` (committed), prepared against a database migrated for that crate
# alone, so that builds check every query offline (SQLX_OFFLINE=true, .cargo/config.toml).
#
#   tests/sqlx.sh prepare [crate...]   rewrite the crates' .sqlx/ (after changing a query or a migration)
#   tests/sqlx.sh check   [crate...]   fail when a crate's .sqlx/ is stale (tests/run.sh runs this)
#
# Needs PostgreSQL running (deploy/local/postgres.sh up) and sqlx-cli (deploy/local/install.sh).
# Each crate gets a scratch database `sqlx_<crate>`, dropped and migrated afresh on every run: the
# platform tables (services/runtime/migrations), then the crate's own migrations, if any.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=../deploy/local/env.sh
source deploy/local/env.sh

# crate directory -> its own migrations ("" for the crates that use only the platform tables);
# ORDER lists them dependencies first (see the pre-pass below)
ORDER=(services/runtime services/messaging services/relay services/campaign services/tracking
  services/commission services/payment services/notification services/analytics services/webhook)
declare -A CRATES=(
  [services/runtime]=""
  [services/messaging]=""
  [services/relay]=""
  [services/campaign]=services/campaign/migrations
  [services/tracking]=services/tracking/migrations
  [services/commission]=services/commission/migrations
  [services/payment]=services/payment/migrations
  [services/notification]=services/notification/migrations
  [services/analytics]=services/analytics/migrations
  [services/webhook]=services/webhook/migrations
)

usage() { echo "usage: tests/sqlx.sh prepare|check [crate...] (crates: ${ORDER[*]})" >&2; exit 2; }
action="${1:-}"
[[ "$action" == prepare || "$action" == check ]] || usage
shift
selected=("$@")
if ((${#selected[@]} == 0)); then selected=("${ORDER[@]}"); fi

[[ -x "$SQLX_BIN" ]] || infra_die "sqlx-cli is missing at $SQLX_BIN: run deploy/local/install.sh"
# `sqlx prepare` runs cargo as `$CARGO` (what `cargo sqlx` would set)
CARGO="${CARGO:-$(command -v cargo)}"
export CARGO
psql_admin() {
  PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"
}
psql_admin -tAc 'SELECT 1' >/dev/null 2>&1 ||
  infra_die "PostgreSQL is not answering on $PG_HOST:$PG_PORT: start it with deploy/local/postgres.sh up"

for dir in "${selected[@]}"; do
  dir="${dir%/}"
  [[ -v "CRATES[$dir]" ]] || usage
  db="sqlx_$(basename "$dir")"
  url="$PG_URL_BASE/$db"
  psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" -c "CREATE DATABASE \"$db\" OWNER \"$PG_USER\""
  "$SQLX_BIN" migrate run --database-url "$url" --source services/runtime/migrations >/dev/null
  if [[ -n "${CRATES[$dir]}" ]]; then
    # the platform's versions are below 1000 and the crate's from 1000, in one history table
    "$SQLX_BIN" migrate run --database-url "$url" --source "${CRATES[$dir]}" --ignore-missing >/dev/null
  fi
  infra_log "sqlx $action: $dir against $db"
  # Pre-pass: the crate and the workspace crates it uses, checked against this database, so that
  # `sqlx prepare` below recompiles only the crate itself and records its queries alone (a
  # workspace dependency compiled in that step would write its queries here too).
  (cd "$dir" && DATABASE_URL="$url" SQLX_OFFLINE=false cargo check --lib --quiet)
  if [[ "$action" == check ]]; then
    (cd "$dir" && DATABASE_URL="$url" "$SQLX_BIN" prepare --check -- --lib) ||
      infra_die "$dir/.sqlx is stale: run tests/sqlx.sh prepare $dir and commit it"
  else
    (cd "$dir" && DATABASE_URL="$url" "$SQLX_BIN" prepare -- --lib)
  fi
done
