#!/usr/bin/env bash
# The whole platform on this machine, no containers.
#
#   deploy/local/platform.sh up       infrastructure (PostgreSQL, Pulsar), build, start every service
#                                     (campaign, tracking, commission, payment, notification;
#                                     SERVICE_MODE, default hybrid) and the relay, then run one
#                                     workflow through grpcurl: campaign → accept → purchase →
#                                     commission → payout, show the campaign's event as it arrived on
#                                     Pulsar and the creator's notifications
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
TRACKING_GRPC="${TRACKING_GRPC:-127.0.0.1:50052}"
COMMISSION_GRPC="${COMMISSION_GRPC:-127.0.0.1:50053}"
PAYMENT_GRPC="${PAYMENT_GRPC:-127.0.0.1:50054}"
NOTIFICATION_GRPC="${NOTIFICATION_GRPC:-127.0.0.1:50055}"
SERVICE_MODE="${SERVICE_MODE:-hybrid}"
# service name:gRPC address. The notification service publishes nothing: the relay skips its outbox.
SERVICES=("campaign-service:$CAMPAIGN_GRPC" "tracking-service:$TRACKING_GRPC" "commission-service:$COMMISSION_GRPC" "payment-service:$PAYMENT_GRPC" "notification-service:$NOTIFICATION_GRPC")

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

call() { # call ADDR METHOD JSON [idempotency key]: grpcurl, printed like a user would type it
  local addr=$1 method=$2 body=$3 key=${4:-}
  echo "\$ grpcurl -plaintext ${key:+-H 'idempotency-key: $key' }-d '$body' $addr $method" >&2
  grpcurl -plaintext ${key:+-H "idempotency-key: $key"} -H "x-correlation-id: demo-$$" -d "$body" "$addr" "$method"
}

json_get() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v.get(k, "") if isinstance(v, dict) else ""
print(v)' "$1"; }

demo() {
  local tail_out="$STATE_DIR/demo-tail.json" tail_pid run creator campaign event payout status balance count
  run=$(date +%s%N)
  creator=$(python3 -c 'import uuid; print(uuid.uuid4())')
  infra_log "demo: one workflow through grpcurl: campaign → accept → purchase → commission → payout"
  "$BIN_DIR/platform" tail --topic campaign-events --count 1 --timeout 60s >"$tail_out" 2>"$STATE_DIR/demo-tail.err" &
  tail_pid=$!
  for _ in $(seq 1 300); do grep -q subscribed "$STATE_DIR/demo-tail.err" 2>/dev/null && break; sleep 0.1; done

  campaign=$(call "$CAMPAIGN_GRPC" affiliate.campaign.v1.CampaignService/CreateCampaign \
    '{"advertiserId":"0193a9e0-0000-7000-8000-0000000000ad","name":"Demo summer launch","commissionRateBps":1250,"budget":{"amountMinor":"500000","currency":"EUR"}}' \
    "demo-create-$run" | json_get campaign.id)
  echo "campaign $campaign"
  call "$CAMPAIGN_GRPC" affiliate.campaign.v1.CampaignService/AcceptCampaign \
    "{\"campaignId\":\"$campaign\",\"creatorId\":\"$creator\",\"acceptedTerms\":true}" "demo-accept-$run" >/dev/null
  echo "creator $creator accepted"
  event=$(call "$TRACKING_GRPC" affiliate.tracking.v1.TrackingService/CreateEvent \
    "{\"campaignId\":\"$campaign\",\"creatorId\":\"$creator\",\"kind\":\"TRACKING_EVENT_KIND_PURCHASE\",\"amount\":{\"amountMinor\":\"20000\",\"currency\":\"EUR\"}}" \
    "demo-purchase-$run" | json_get event.id)
  echo "purchase $event of 200.00 EUR"
  for _ in $(seq 1 300); do
    balance=$(grpcurl -plaintext -d "{\"creatorId\":\"$creator\",\"currency\":\"EUR\"}" "$COMMISSION_GRPC" \
      affiliate.commission.v1.CommissionService/GetBalance | json_get balance.availableMinor)
    [[ -n "$balance" && "$balance" != 0 ]] && break
    sleep 0.2
  done
  echo "commission earned: available balance $balance minor units (12.5 % of 20000)"
  payout=$(call "$PAYMENT_GRPC" affiliate.payment.v1.PaymentService/RequestPayout \
    "{\"creatorId\":\"$creator\",\"amount\":{\"amountMinor\":\"2000\",\"currency\":\"EUR\"},\"method\":\"PAYOUT_METHOD_BANK_TRANSFER\",\"accountDetails\":\"DE89370400440532013000\"}" \
    "demo-payout-$run" | json_get payout.id)
  for _ in $(seq 1 300); do
    status=$(grpcurl -plaintext -d "{\"payoutId\":\"$payout\"}" "$PAYMENT_GRPC" affiliate.payment.v1.PaymentService/GetPayout | json_get payout.status)
    [[ "$status" == PAYOUT_STATUS_COMPLETED || "$status" == PAYOUT_STATUS_FAILED || "$status" == PAYOUT_STATUS_REJECTED ]] && break
    sleep 0.2
  done
  echo "payout $payout: $status"
  grpcurl -plaintext -d "{\"creatorId\":\"$creator\",\"currency\":\"EUR\"}" "$COMMISSION_GRPC" affiliate.commission.v1.CommissionService/GetBalance
  [[ "$status" == PAYOUT_STATUS_COMPLETED ]] || infra_die "the demo payout did not complete ($status); see $LOG_DIR/*.log"
  if ! wait "$tail_pid"; then
    infra_die "the campaign event did not arrive on Pulsar: $(cat "$STATE_DIR/demo-tail.err"); see $LOG_DIR/relay.log"
  fi
  echo "the campaign as it arrived on persistent://$PULSAR_TENANT/$PULSAR_NAMESPACE/campaign-events:"
  python3 -m json.tool <"$tail_out"
  # accepted, commission earned, payout requested, payout completed
  for _ in $(seq 1 300); do
    count=$(grpcurl -plaintext -d "{\"userId\":\"$creator\"}" "$NOTIFICATION_GRPC" \
      affiliate.notification.v1.NotificationService/ListNotifications | json_get unreadCount)
    [[ "${count:-0}" -ge 4 ]] && break
    sleep 0.2
  done
  echo "the creator's notifications, newest first:"
  call "$NOTIFICATION_GRPC" affiliate.notification.v1.NotificationService/ListNotifications "{\"userId\":\"$creator\"}"
  [[ "${count:-0}" -ge 4 ]] || infra_die "the creator was not told of every step ($count notifications); see $LOG_DIR/notification-service.log"
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
    outboxes=""
    for entry in "${SERVICES[@]}"; do
      name=${entry%%:*} addr=${entry#*:} db=${name%-service}
      start "$name" "$name" MODE="$SERVICE_MODE" DATABASE_URL="$PG_URL_BASE/$db" GRPC_LISTEN="$addr" \
        PULSAR_URL="$PULSAR_URL" PULSAR_TENANT="$PULSAR_TENANT" PULSAR_NAMESPACE="$PULSAR_NAMESPACE"
      [[ "$db" == notification ]] || outboxes+="${outboxes:+,}$db=$PG_URL_BASE/$db"
    done
    for entry in "${SERVICES[@]}"; do wait_grpc "${entry%%:*}" "${entry#*:}"; done
    start relay relay RELAY_OUTBOXES="$outboxes" PULSAR_URL="$PULSAR_URL" \
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
