#!/usr/bin/env bash
# The whole platform on this machine, no containers.
#
#   deploy/local/platform.sh up       infrastructure (PostgreSQL, Pulsar), build, start every service
#                                     and the relay, then show a campaign created over gRPC arriving
#                                     on Pulsar as a typed event
#   deploy/local/platform.sh down     stop the services and the relay, then the infrastructure
#   deploy/local/platform.sh status   what runs, where
#   deploy/local/platform.sh demo     only the demonstration (the platform must be up)
#
# Idempotent: what already runs is left running. Logs: .state/logs/<process>.log; pids: .state/pids/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"

CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
BIN_DIR="$CARGO_TARGET_DIR/debug"
CAMPAIGN_GRPC="${CAMPAIGN_GRPC:-127.0.0.1:50051}"
# service name, gRPC address (empty for processes without one)
SERVICES=("campaign-service:$CAMPAIGN_GRPC")

pid_alive() { [[ -f "$PID_DIR/$1.pid" ]] && kill -0 "$(cat "$PID_DIR/$1.pid")" 2>/dev/null; }

start() { # start NAME BINARY [ENV=VALUE...]
  local name=$1 bin=$2
  shift 2
  if pid_alive "$name"; then
    infra_log "$name already running (pid $(cat "$PID_DIR/$name.pid"))"
    return
  fi
  mkdir -p "$LOG_DIR" "$PID_DIR"
  env "$@" RUST_LOG="${RUST_LOG:-info,sqlx=warn,pulsar=warn,h2=warn}" \
    nohup "$BIN_DIR/$bin" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$PID_DIR/$name.pid"
  infra_log "$name started (pid $!, log $LOG_DIR/$name.log)"
}

stop() { # stop NAME: SIGTERM, then SIGKILL after 15 s
  local name=$1 pid
  pid_alive "$name" || { rm -f "$PID_DIR/$name.pid"; return 0; }
  pid=$(cat "$PID_DIR/$name.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    infra_log "$name did not stop in 15 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_DIR/$name.pid"
  infra_log "$name stopped"
}

wait_grpc() { # wait_grpc NAME ADDR: until the health check answers SERVING (60 s)
  local name=$1 addr=$2
  for _ in $(seq 1 600); do
    if grpcurl -plaintext -max-time 1 "$addr" grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; then
      return 0
    fi
    pid_alive "$name" || infra_die "$name exited during start; see $LOG_DIR/$name.log"
    sleep 0.1
  done
  infra_die "$name did not become healthy on $addr within 60 s; see $LOG_DIR/$name.log"
}

demo() {
  local tail_out="$STATE_DIR/demo-tail.json" tail_pid addr=$CAMPAIGN_GRPC
  infra_log "demo: subscribing to campaign-events, then creating a campaign over gRPC"
  "$BIN_DIR/platform" tail --topic campaign-events --count 1 --timeout 60s >"$tail_out" 2>"$STATE_DIR/demo-tail.err" &
  tail_pid=$!
  for _ in $(seq 1 300); do grep -q subscribed "$STATE_DIR/demo-tail.err" 2>/dev/null && break; sleep 0.1; done
  grep -q subscribed "$STATE_DIR/demo-tail.err" || infra_die "could not subscribe: $(cat "$STATE_DIR/demo-tail.err")"
  echo "\$ grpcurl -plaintext -H 'idempotency-key: demo-…' -d '{…}' $addr affiliate.campaign.v1.CampaignService/CreateCampaign"
  grpcurl -plaintext -H "idempotency-key: demo-$(date +%s%N)" -H "x-correlation-id: demo-$$" \
    -d '{"advertiserId":"0193a9e0-0000-7000-8000-0000000000ad","name":"Demo summer launch","description":"created by platform.sh demo","commissionRateBps":1250,"budget":{"amountMinor":"500000","currency":"EUR"}}' \
    "$addr" affiliate.campaign.v1.CampaignService/CreateCampaign
  if ! wait "$tail_pid"; then
    infra_die "the event did not arrive on Pulsar: $(cat "$STATE_DIR/demo-tail.err"); see $LOG_DIR/relay.log"
  fi
  echo "received on persistent://$PULSAR_TENANT/$PULSAR_NAMESPACE/campaign-events:"
  if command -v python3 >/dev/null; then python3 -m json.tool <"$tail_out"; else cat "$tail_out"; fi
}

status() {
  "$HERE/infra.sh" status || true
  for entry in "${SERVICES[@]}" relay:; do
    local name=${entry%%:*} addr=${entry#*:}
    if pid_alive "$name"; then
      echo "$name: running (pid $(cat "$PID_DIR/$name.pid"))${addr:+, gRPC $addr}, log $LOG_DIR/$name.log"
    else
      echo "$name: stopped"
    fi
  done
}

case "${1:-}" in
  up)
    t0=$(date +%s)
    "$HERE/infra.sh" up
    infra_log "building the workspace (cargo build --workspace --bins)"
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$CARGO_TARGET_DIR" cargo build --workspace --bins --quiet)
    start campaign-service campaign-service \
      MODE=hybrid DATABASE_URL="$PG_URL_BASE/campaign" GRPC_LISTEN="$CAMPAIGN_GRPC" \
      PULSAR_URL="$PULSAR_URL" PULSAR_TENANT="$PULSAR_TENANT" PULSAR_NAMESPACE="$PULSAR_NAMESPACE"
    wait_grpc campaign-service "$CAMPAIGN_GRPC"
    start relay relay \
      RELAY_OUTBOXES="campaign=$PG_URL_BASE/campaign" PULSAR_URL="$PULSAR_URL" \
      PULSAR_TENANT="$PULSAR_TENANT" PULSAR_NAMESPACE="$PULSAR_NAMESPACE"
    demo
    infra_log "platform up in $(($(date +%s) - t0)) s"
    status
    ;;
  down)
    stop relay
    for entry in "${SERVICES[@]}"; do stop "${entry%%:*}"; done
    "$HERE/infra.sh" down
    ;;
  status) status ;;
  demo) demo ;;
  *) echo "usage: $0 up|down|status|demo" >&2; exit 2 ;;
esac
