#!/usr/bin/env bash
# Checks the running local infrastructure end to end:
#   - psql connects as $PG_USER over 127.0.0.1:$PG_PORT to every database (and a wrong password fails)
#   - Pulsar: produces one message to persistent://$PULSAR_TENANT/$PULSAR_NAMESPACE/smoke and consumes it
#     back (Java client from the broker's jar closure), then reads the topic stats from the admin API
#   - every listening socket of both servers is bound to 127.0.0.1
# Usage: deploy/local/smoke.sh    (after deploy/local/infra.sh up)
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# ---- PostgreSQL ---------------------------------------------------------------------------
for db in $PG_DATABASES; do
  url="$PG_URL_BASE/$db"
  if out="$("$PG_BINDIR/psql" -X "$url" -tAc "SELECT current_database() || ' ' || current_user || ' super=' || usesuper || ' max_connections=' || current_setting('max_connections') FROM pg_user WHERE usename = current_user" 2>&1)"; then
    ok "psql $url -> $out"
  else
    bad "psql $url: $out"
  fi
done
if PGCONNECT_TIMEOUT=5 "$PG_BINDIR/psql" -X "postgres://$PG_USER:wrong-password@$PG_HOST:$PG_PORT/postgres" -tAc 'SELECT 1' >/dev/null 2>&1; then
  bad "a wrong password was accepted"
else
  ok "wrong password rejected (scram-sha-256)"
fi

# ---- Pulsar ---------------------------------------------------------------------------------
topic="persistent://$PULSAR_TENANT/$PULSAR_NAMESPACE/smoke"
# client logs go to $LOG_DIR/pulsar-smoke.log (warn and above)
if java -cp "$PULSAR_LIB_DIR/*" "-Dlog4j.configurationFile=$LOCAL_INFRA_DIR/pulsar/conf/log4j2.xml" \
  "-Dpulsar.log.dir=$LOG_DIR" -Dpulsar.log.file=pulsar-smoke.log -Dpulsar.log.level=warn \
  -Dotel.java.global-autoconfigure.enabled=false \
  "$LOCAL_INFRA_DIR/pulsar/PulsarSmoke.java" "$PULSAR_URL" "$topic" 2>&1 |
  grep -vE '^(SLF4J|WARNING|INFO: )|GlobalOpenTelemetry' | sed 's/^/     /'; then
  ok "pulsar produce/consume on $topic"
else
  bad "pulsar produce/consume on $topic"
fi
stats="$(curl -s --max-time 5 "$PULSAR_ADMIN_URL/admin/v2/persistent/$PULSAR_TENANT/$PULSAR_NAMESPACE/smoke/stats")"
if command -v jq >/dev/null 2>&1; then
  in="$(jq -r '.msgInCounter // empty' <<<"$stats")"
  out="$(jq -r '.subscriptions.smoke.msgOutCounter // empty' <<<"$stats")"
else
  in="$(grep -oE '"msgInCounter":[0-9]+' <<<"$stats" | head -n 1 | cut -d: -f2)"
  out="$(grep -oE '"msgOutCounter":[0-9]+' <<<"$stats" | head -n 1 | cut -d: -f2)"
fi
if [[ "${in:-0}" -ge 1 && "${out:-0}" -ge 1 ]]; then
  ok "topic stats: msgInCounter=$in, subscription smoke msgOutCounter=$out"
else
  bad "topic stats: $stats"
fi

schema="$(curl -s --max-time 5 "$PULSAR_ADMIN_URL/admin/v2/schemas/$PULSAR_TENANT/$PULSAR_NAMESPACE/smoke/schema")"
if grep -q '"type":"STRING"' <<<"$schema"; then ok "schema registry: smoke topic has schema $schema"; else bad "schema registry: $schema"; fi
conf="$(curl -s --max-time 5 "$PULSAR_ADMIN_URL/admin/v2/brokers/configuration/runtime")"
for kv in brokerDeduplicationEnabled=false brokerDeleteInactiveTopicsEnabled=false allowAutoTopicCreation=true \
  allowAutoTopicCreationType=non-partitioned bindAddress=127.0.0.1 advertisedAddress=127.0.0.1; do
  if grep -qF "\"${kv%%=*}\":\"${kv#*=}\"" <<<"$conf"; then ok "broker config $kv"; else bad "broker config ${kv%%=*}: expected ${kv#*=}"; fi
done

# ---- loopback only ------------------------------------------------------------------------
pulsar_pid="$(cat "$PID_DIR/pulsar.pid" 2>/dev/null || true)"
pg_pid="$(ss -Hltnp "sport = :$PG_PORT" | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2 || true)"
[[ -n "$pulsar_pid" && -n "$pg_pid" ]] || bad "could not find the listening processes (pulsar '$pulsar_pid', postgres '$pg_pid')"
for p in $pulsar_pid $pg_pid; do
  while read -r addr; do
    case "$addr" in
      127.0.0.1:*) ok "pid $p ($(ps -o comm= -p "$p")) listens on $addr" ;;
      *) bad "pid $p listens on $addr (not loopback)" ;;
    esac
  done < <(ss -Hltnp | grep -F "pid=$p," | awk '{print $4}')
done

if ((fail)); then echo "smoke: FAILED"; exit 1; fi
echo "smoke: all checks passed"
