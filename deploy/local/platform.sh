#!/usr/bin/env bash
# The whole platform on this machine, no containers.
#
#   deploy/local/platform.sh up       infrastructure (PostgreSQL, Pulsar), build, start the trace viewer
#                                     (Jaeger UI on $TRACE_UI; every process exports its spans to it),
#                                     every service (campaign, tracking, commission, payment, notification,
#                                     analytics, webhook; SERVICE_MODE, default hybrid), the relay, the BFF and the
#                                     redirect edge (tracking links, http://$REDIRECT_HTTP/c/{code}), then run
#                                     one workflow through grpcurl: campaign → accept → purchase →
#                                     commission → payout, show the campaign's event as it arrived on
#                                     Pulsar and the creator's notifications; then the same journey
#                                     over REST through the BFF with curl and development tokens
#   deploy/local/platform.sh down     stop the edge, the BFF, the relay, the services and the trace viewer, then the
#                                     infrastructure
#   deploy/local/platform.sh status   what runs, where
#   deploy/local/platform.sh demo     only the demonstration (the platform must be up)
#
# PULSAR_SECURE=1 deploy/local/platform.sh up: the same against the secured broker (TLS only, token
# authentication and authorization; see pulsar.sh): every process gets PULSAR_TLS_CA_FILE and
# PULSAR_TOKEN_FILE (the platform role's token; the BFF's dead-letter reads use the admin token).
# PULSAR_CLUSTER=1 deploy/local/platform.sh up: the same against the local Pulsar cluster of
# pulsar-cluster.sh (ZooKeeper, 3 bookies, 2 brokers), every process through its proxy.
#
# Builds: PROFILE=debug (default) or PROFILE=release (the same as `--release` after the command,
# e.g. `deploy/local/platform.sh up --release`): `cargo build --release` and the binaries run from
# $CARGO_TARGET_DIR/release. Processes already running from the other build keep running (a warning
# says so): `down` first to switch.
#
# Idempotent: what already runs is left running. Logs: .state/logs/<process>.log; pids: .state/pids/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"

CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
PROFILE="${PROFILE:-debug}"
# `--release` among the arguments is PROFILE=release; the other arguments stay as they were.
args=()
for arg in "$@"; do
  if [[ "$arg" == --release ]]; then PROFILE=release; else args+=("$arg"); fi
done
set -- ${args[@]+"${args[@]}"}
case "$PROFILE" in
  debug | dev) PROFILE=debug BUILD_FLAGS=() ;;
  release) BUILD_FLAGS=(--release) ;;
  *) infra_die "PROFILE must be debug or release, not '$PROFILE'" ;;
esac
BIN_DIR="$CARGO_TARGET_DIR/$PROFILE"
CAMPAIGN_GRPC="${CAMPAIGN_GRPC:-127.0.0.1:50051}"
TRACKING_GRPC="${TRACKING_GRPC:-127.0.0.1:50052}"
COMMISSION_GRPC="${COMMISSION_GRPC:-127.0.0.1:50053}"
PAYMENT_GRPC="${PAYMENT_GRPC:-127.0.0.1:50054}"
NOTIFICATION_GRPC="${NOTIFICATION_GRPC:-127.0.0.1:50055}"
ANALYTICS_GRPC="${ANALYTICS_GRPC:-127.0.0.1:50056}"
WEBHOOK_GRPC="${WEBHOOK_GRPC:-127.0.0.1:50057}"
SERVICE_MODE="${SERVICE_MODE:-hybrid}"
BFF_HTTP="${BFF_HTTP:-127.0.0.1:8088}"
# The redirect edge: tracking links' GET /c/{code}, on tracking's database.
REDIRECT_HTTP="${REDIRECT_HTTP:-127.0.0.1:8090}"
# The trace viewer: OTLP gRPC receiver (OTEL_EXPORTER_OTLP_ENDPOINT of every process) and Jaeger UI.
TRACE_OTLP="${TRACE_OTLP:-127.0.0.1:4317}"
TRACE_UI="${TRACE_UI:-127.0.0.1:16686}"
# The development HS256 secret of the BFF's tokens: JWT_HS256_SECRET, or one generated once and
# kept (mode 600) in .state/jwt-secret. Never a production setting: use JWT_JWKS_URL there.
JWT_SECRET_FILE="$STATE_DIR/jwt-secret"
# service name:gRPC address. The notification and analytics services publish nothing: the relay
# skips their outboxes (it serves the others', webhook-events included).
SERVICES=("campaign-service:$CAMPAIGN_GRPC" "tracking-service:$TRACKING_GRPC" "commission-service:$COMMISSION_GRPC" "payment-service:$PAYMENT_GRPC" "notification-service:$NOTIFICATION_GRPC" "analytics-service:$ANALYTICS_GRPC" "webhook-service:$WEBHOOK_GRPC")

pid_alive() { [[ -f "$PID_DIR/$1.pid" ]] && kill -0 "$(cat "$PID_DIR/$1.pid")" 2>/dev/null; }

# PULSAR_SECURE=1: the broker is TLS only with tokens (pulsar.sh); every process trusts its CA and
# authenticates as $PULSAR_APP_ROLE, the BFF's dead-letter reads as the admin role (admin API rights).
bff_pulsar_env=()
if [[ "$PULSAR_SECURE" == 1 ]]; then
  export PULSAR_TLS_CA_FILE="$PULSAR_TLS_DIR/ca.crt" PULSAR_TOKEN_FILE="$PULSAR_TLS_DIR/$PULSAR_APP_ROLE.token"
  bff_pulsar_env=(PULSAR_TOKEN_FILE="$PULSAR_TLS_DIR/admin.token")
fi

start() { # start NAME BINARY [ENV=VALUE...]
  local name=$1 bin=$2
  shift 2
  local cmd
  read -ra cmd <<<"$bin" # a binary and its arguments, e.g. "bff serve"
  if pid_alive "$name"; then
    local pid running_dir
    pid=$(cat "$PID_DIR/$name.pid")
    # the directory of the running binary (a rebuilt file reads "<path> (deleted)"; its directory does not)
    running_dir=$(dirname "$(readlink "/proc/$pid/exe" 2>/dev/null || echo "$BIN_DIR/x")")
    if [[ "$(cd "$running_dir" 2>/dev/null && pwd -P)" != "$(cd "$BIN_DIR" 2>/dev/null && pwd -P)" ]]; then
      infra_log "WARNING: $name already running (pid $pid) from $running_dir, not the $PROFILE build in $BIN_DIR; \`$0 down\` first to switch"
    else
      infra_log "$name already running (pid $pid)"
    fi
    return
  fi
  mkdir -p "$LOG_DIR" "$PID_DIR"
  env "$@" RUST_LOG="${RUST_LOG:-info,sqlx=warn,pulsar=warn,h2=warn}" \
    nohup "$BIN_DIR/${cmd[0]}" "${cmd[@]:1}" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
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

wait_http() { # wait_http NAME URL: until the URL answers 2xx (30 s)
  local name=$1 url=$2
  for _ in $(seq 1 300); do
    curl -sf "$url" >/dev/null && return 0
    pid_alive "$name" || infra_die "$name exited during start; see $LOG_DIR/$name.log"
    sleep 0.1
  done
  infra_die "$name did not answer $url within 30 s; see $LOG_DIR/$name.log"
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

  # no hold period ("0s"): the commission is approved at once, so it can be paid out right away
  campaign=$(call "$CAMPAIGN_GRPC" affiliate.campaign.v1.CampaignService/CreateCampaign \
    '{"advertiserId":"0193a9e0-0000-7000-8000-0000000000ad","name":"Demo summer launch","commissionRateBps":1250,"budget":{"amountMinor":"500000","currency":"EUR"},"holdPeriod":"0s"}' \
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

kept_secret() { # kept_secret FILE: a random secret generated once and kept (mode 600) in FILE
  if [[ ! -s "$1" ]]; then
    mkdir -p "$STATE_DIR"
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(48), end="")' >"$1")
  fi
  cat "$1"
}

jwt_secret() {
  if [[ -n "${JWT_HS256_SECRET:-}" ]]; then printf '%s' "$JWT_HS256_SECRET"; return; fi
  kept_secret "$JWT_SECRET_FILE"
}

# The salt of the visitors' IP hashes: CLICK_IP_SALT, or one generated once and kept in
# .state/click-ip-salt (a new salt makes every returning visitor a new one).
click_ip_salt() {
  if [[ -n "${CLICK_IP_SALT:-}" ]]; then printf '%s' "$CLICK_IP_SALT"; return; fi
  kept_secret "$STATE_DIR/click-ip-salt"
}

# The key sealing partners' webhook secrets at rest: WEBHOOK_SECRET_KEYS, or one generated once
# and kept in .state/webhook-secret-key (without it the stored secrets no longer open).
webhook_secret_keys() {
  if [[ -n "${WEBHOOK_SECRET_KEYS:-}" ]]; then printf '%s' "$WEBHOOK_SECRET_KEYS"; return; fi
  kept_secret "$STATE_DIR/webhook-secret-key"
}

token() { # token SUB ROLE: a development token for the local BFF
  JWT_HS256_SECRET="$(jwt_secret)" "$BIN_DIR/bff" token --sub "$1" --role "$2"
}

rest() { # rest METHOD PATH TOKEN [JSON [curl options]]: curl through the BFF, printed like a user would type it
  local method=$1 path=$2 tok=$3 body=${4:-}
  shift 4 2>/dev/null || shift $#
  echo "\$ curl -X $method http://$BFF_HTTP$path -H 'Authorization: Bearer \$TOKEN'${body:+ -H 'Content-Type: application/json' -d '$body'}" >&2
  curl -sS -X "$method" "http://$BFF_HTTP$path" -H "Authorization: Bearer $tok" \
    ${body:+-H 'Content-Type: application/json' -d "$body"} "$@"
}

rest_demo() {
  local advertiser creator adv cre campaign payout status balance
  advertiser=$(python3 -c 'import uuid; print(uuid.uuid4())')
  creator=$(python3 -c 'import uuid; print(uuid.uuid4())')
  adv=$(token "$advertiser" advertiser)
  cre=$(token "$creator" creator)
  infra_log "demo: the same journey over REST through the BFF (http://$BFF_HTTP)"
  campaign=$(rest POST /api/v1/campaigns "$adv" \
    '{"name":"REST demo","commissionRateBps":1000,"budget":{"amountMinor":"100000","currency":"USD"},"holdPeriodSeconds":0}' | json_get id)
  echo "campaign $campaign"
  rest POST "/api/v1/creators/$creator/acceptances" "$cre" "{\"campaignId\":\"$campaign\",\"acceptedTerms\":true}" >/dev/null
  local headers="$STATE_DIR/demo-headers.txt" trace
  # A sampled traceparent of our own: the platform records one new trace in ten by default
  # (parent-based), and follows a caller that asks for its trace to be recorded.
  local sampled
  sampled="00-$(python3 -c 'import secrets; print(secrets.token_hex(16) + "-" + secrets.token_hex(8))')-01"
  rest POST /api/v1/tracking-events "$adv" \
    "{\"campaignId\":\"$campaign\",\"creatorId\":\"$creator\",\"kind\":\"TRACKING_EVENT_KIND_PURCHASE\",\"amount\":{\"amountMinor\":\"5000\",\"currency\":\"USD\"}}" \
    -H "traceparent: $sampled" -D "$headers" >/dev/null
  trace=$(awk -F- 'tolower($0) ~ /^traceparent:/ {print $2}' "$headers")
  for _ in $(seq 1 300); do
    balance=$(curl -sS "http://$BFF_HTTP/api/v1/creators/$creator/balance?currency=USD" -H "Authorization: Bearer $cre" | json_get availableMinor)
    [[ -n "$balance" && "$balance" != 0 ]] && break
    sleep 0.2
  done
  echo "commission earned: available $balance minor units (10 % of 5000)"
  payout=$(rest POST "/api/v1/creators/$creator/payouts" "$cre" \
    '{"amount":{"amountMinor":"500","currency":"USD"},"method":"PAYOUT_METHOD_PAYPAL","accountDetails":"creator@example.com"}' | json_get id)
  for _ in $(seq 1 300); do
    status=$(curl -sS "http://$BFF_HTTP/api/v1/creators/$creator/payouts/$payout" -H "Authorization: Bearer $cre" | json_get status)
    [[ "$status" == PAYOUT_STATUS_COMPLETED || "$status" == PAYOUT_STATUS_FAILED || "$status" == PAYOUT_STATUS_REJECTED ]] && break
    sleep 0.2
  done
  echo "payout $payout: $status"
  [[ "$status" == PAYOUT_STATUS_COMPLETED ]] || infra_die "the REST demo payout did not complete ($status); see $LOG_DIR/bff.log"
  rest GET "/api/v1/creators/$creator/balance?currency=USD" "$cre" | python3 -m json.tool
  echo "the creator's notifications over REST (live: GET /api/v1/notifications/stream):"
  for _ in $(seq 1 100); do
    [[ "$(curl -sS "http://$BFF_HTTP/api/v1/notifications" -H "Authorization: Bearer $cre" | json_get unreadCount)" -ge 4 ]] && break
    sleep 0.2
  done
  rest GET /api/v1/notifications "$cre" | python3 -c 'import json,sys
for n in json.load(sys.stdin)["notifications"]: print("  #" + n["sequence"], n["title"], "-", n["body"])'
  echo "API docs: http://$BFF_HTTP/docs   OpenAPI: http://$BFF_HTTP/openapi.json"
  echo "the purchase as one trace (BFF → tracking → relay → Pulsar → commission → relay → payment, notification):"
  echo "  http://$TRACE_UI/trace/$trace"
  echo "metrics: relay http://127.0.0.1:9100/metrics, services http://127.0.0.1:9101..9105/metrics, bff http://127.0.0.1:9106/metrics, analytics http://127.0.0.1:9107/metrics, webhook http://127.0.0.1:9108/metrics"
  echo "a token: JWT_HS256_SECRET=\$(cat $JWT_SECRET_FILE) $BIN_DIR/bff token --sub <uuid> --role advertiser|creator|admin"
}

link_demo() {
  local advertiser creator adv cre campaign link url location click key answer balance
  advertiser=$(python3 -c 'import uuid; print(uuid.uuid4())')
  creator=$(python3 -c 'import uuid; print(uuid.uuid4())')
  adv=$(token "$advertiser" advertiser)
  cre=$(token "$creator" creator)
  infra_log "demo: a tracking link, a click through the edge (http://$REDIRECT_HTTP) and the shop's postback"
  campaign=$(rest POST /api/v1/campaigns "$adv" \
    '{"name":"Link demo","commissionRateBps":1000,"budget":{"amountMinor":"100000","currency":"USD"},"holdPeriodSeconds":0,"tracking":{"landingUrl":"https://shop.example.com/spring","landingDomains":["*.example.com"],"minClickToConversionSeconds":0}}' | json_get id)
  rest POST "/api/v1/creators/$creator/acceptances" "$cre" "{\"campaignId\":\"$campaign\",\"acceptedTerms\":true}" >/dev/null
  # tracking learns of the campaign and the acceptance through campaign-events: a moment
  for _ in $(seq 1 100); do
    link=$(curl -sS "http://$BFF_HTTP/api/v1/creators/$creator/links" -H "Authorization: Bearer $cre" \
      -H 'Content-Type: application/json' -d "{\"campaignId\":\"$campaign\",\"subIds\":{\"sub1\":\"demo-video\"},\"deepLink\":\"https://www.example.com/shoes\"}")
    url=$(json_get url <<<"$link")
    [[ -n "$url" ]] && break
    sleep 0.2
  done
  [[ -n "$url" ]] || infra_die "no tracking link: $link; see $LOG_DIR/tracking-service.log"
  echo "the creator's link: $url"
  echo "\$ curl -si -A 'Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0' $url"
  location=$(curl -si -A 'Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0' "$url" | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r')
  echo "Location: $location"
  click=${location##*click_id=}
  [[ -n "$location" && "$click" != "$location" ]] || infra_die "the edge did not redirect with a click id; see $LOG_DIR/redirect.log"
  key=$(rest POST "/api/v1/advertisers/$advertiser/postback-keys" "$adv" | json_get secret)
  echo "\$ curl 'http://$BFF_HTTP/postback?click_id=$click&order_id=demo-1&amount=49.99&currency=USD&key=<the postback key>'"
  answer=$(curl -sS "http://$BFF_HTTP/postback?click_id=$click&order_id=demo-1&amount=49.99&currency=USD&key=$key")
  echo "conversion: $(json_get conversion.status <<<"$answer") (the same order again answers 200 with \"duplicate\": true)"
  for _ in $(seq 1 300); do
    balance=$(curl -sS "http://$BFF_HTTP/api/v1/creators/$creator/balance?currency=USD" -H "Authorization: Bearer $cre" | json_get availableMinor)
    [[ -n "$balance" && "$balance" != 0 ]] && break
    sleep 0.2
  done
  echo "commission earned through the link: available $balance minor units (10 % of 4999, rounded half up)"
  [[ "$balance" == 500 ]] || infra_die "the conversion's commission did not arrive ($answer); see $LOG_DIR/*.log"
}

status() {
  "$HERE/infra.sh" status || true
  if pid_alive trace-viewer; then
    echo "trace-viewer: running (pid $(cat "$PID_DIR/trace-viewer.pid")), UI http://$TRACE_UI, OTLP $TRACE_OTLP, log $LOG_DIR/trace-viewer.log"
  else
    echo "trace-viewer: stopped"
  fi
  for entry in "${SERVICES[@]}" relay: "bff:http://$BFF_HTTP" "redirect:http://$REDIRECT_HTTP"; do
    local name=${entry%%:*} addr=${entry#*:}
    if pid_alive "$name"; then
      local where=""
      if [[ $addr == http* ]]; then where=", REST $addr"; elif [[ -n $addr ]]; then where=", gRPC $addr"; fi
      echo "$name: running (pid $(cat "$PID_DIR/$name.pid"))$where, log $LOG_DIR/$name.log"
    else
      echo "$name: stopped"
    fi
  done
}

case "${1:-}" in
  up)
    t0=$(date +%s)
    "$HERE/infra.sh" up
    infra_log "building the workspace (cargo build --workspace --bins${BUILD_FLAGS[*]:+ ${BUILD_FLAGS[*]}}; binaries from $BIN_DIR)"
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$CARGO_TARGET_DIR" cargo build --workspace --bins --quiet ${BUILD_FLAGS[@]+"${BUILD_FLAGS[@]}"})
    # every envelope's schema in the registry before anything uses the topics (docs/design.md)
    env PULSAR_URL="$PULSAR_URL" PULSAR_ADMIN_URL="$PULSAR_ADMIN_URL" PULSAR_TENANT="$PULSAR_TENANT" \
      PULSAR_NAMESPACE="$PULSAR_NAMESPACE" ${bff_pulsar_env[@]+"${bff_pulsar_env[@]}"} "$BIN_DIR/platform" schemas
    # first, so the processes' first spans have somewhere to go; it exports nothing itself
    start trace-viewer trace-viewer OTLP_LISTEN="$TRACE_OTLP" TRACE_UI_LISTEN="$TRACE_UI" OTEL_EXPORTER_OTLP_ENDPOINT=
    wait_http trace-viewer "http://$TRACE_UI/api/services"
    otel="OTEL_EXPORTER_OTLP_ENDPOINT=http://$TRACE_OTLP"
    outboxes=""
    for entry in "${SERVICES[@]}"; do
      name=${entry%%:*} addr=${entry#*:} db=${name%-service}
      # Prometheus: /metrics on 9101.. for the services (gRPC port - 50051 + 9101, skipping the
      # BFF's 9106: analytics on 9107, webhook on 9108), 9100 for the relay
      metrics=$((${addr##*:} - 50051 + 9101))
      ((metrics < 9106)) || metrics=$((metrics + 1))
      own=()
      # analytics: replays move its subscriptions' cursors, and the backlogs are read, through the admin API
      if [[ "$db" == analytics ]]; then own=(PULSAR_ADMIN_URL="$PULSAR_ADMIN_URL"); fi
      # payment: the smallest payout per currency, e.g. PAYOUT_MINIMUMS=EUR=10.00,USD=25.00 (none if empty)
      if [[ "$db" == payment ]]; then own=(PAYOUT_MINIMUMS="${PAYOUT_MINIMUMS:-}"); fi
      # webhook: FOR THE LOCAL DEMO ONLY, a partner's receiver on this machine may be reached:
      # loopback is allowed although private, and plain http:// endpoints too. Its defaults (and
      # compose's and Helm's) refuse both: only public https:// destinations.
      if [[ "$db" == webhook ]]; then
        own=(WEBHOOK_ALLOW_NETWORKS="${WEBHOOK_ALLOW_NETWORKS:-127.0.0.0/8}" WEBHOOK_ALLOW_HTTP="${WEBHOOK_ALLOW_HTTP:-true}"
          WEBHOOK_SECRET_KEYS="$(webhook_secret_keys)")
      fi
      start "$name" "$name" "$otel" METRICS_LISTEN="127.0.0.1:$metrics" \
        MODE="$SERVICE_MODE" DATABASE_URL="$PG_URL_BASE/$db" GRPC_LISTEN="$addr" \
        PULSAR_URL="$PULSAR_URL" PULSAR_TENANT="$PULSAR_TENANT" PULSAR_NAMESPACE="$PULSAR_NAMESPACE" ${own[@]+"${own[@]}"}
      [[ "$db" == notification || "$db" == analytics ]] || outboxes+="${outboxes:+,}$db=$PG_URL_BASE/$db"
    done
    for entry in "${SERVICES[@]}"; do wait_grpc "${entry%%:*}" "${entry#*:}"; done
    start relay relay "$otel" METRICS_LISTEN=127.0.0.1:9100 RELAY_OUTBOXES="$outboxes" PULSAR_URL="$PULSAR_URL" \
      PULSAR_TENANT="$PULSAR_TENANT" PULSAR_NAMESPACE="$PULSAR_NAMESPACE"
    start bff "bff serve" "$otel" METRICS_LISTEN=127.0.0.1:9106 BFF_LISTEN="$BFF_HTTP" JWT_HS256_SECRET="$(jwt_secret)" \
      CAMPAIGN_GRPC_URL="http://$CAMPAIGN_GRPC" TRACKING_GRPC_URL="http://$TRACKING_GRPC" \
      COMMISSION_GRPC_URL="http://$COMMISSION_GRPC" PAYMENT_GRPC_URL="http://$PAYMENT_GRPC" \
      NOTIFICATION_GRPC_URL="http://$NOTIFICATION_GRPC" ANALYTICS_GRPC_URL="http://$ANALYTICS_GRPC" \
      WEBHOOK_GRPC_URL="http://$WEBHOOK_GRPC" \
      PULSAR_ADMIN_URL="$PULSAR_ADMIN_URL" REDIRECT_PUBLIC_URL="http://$REDIRECT_HTTP" \
      PULSAR_TENANT="$PULSAR_TENANT" PULSAR_NAMESPACE="$PULSAR_NAMESPACE" ${bff_pulsar_env[@]+"${bff_pulsar_env[@]}"}
    wait_http bff "http://$BFF_HTTP/health"
    # loopback is trusted to tell the visitor's address (X-Forwarded-For): the load generator does
    start redirect redirect "$otel" REDIRECT_LISTEN="$REDIRECT_HTTP" DATABASE_URL="$PG_URL_BASE/tracking" \
      CLICK_IP_SALT="$(click_ip_salt)" TRUSTED_PROXIES=127.0.0.1/32
    wait_http redirect "http://$REDIRECT_HTTP/healthz"
    demo
    rest_demo
    link_demo
    infra_log "platform up in $(($(date +%s) - t0)) s"
    status
    echo "Trace viewer: http://$TRACE_UI  (service: bff; one trace per request)"
    ;;
  down)
    stop redirect
    stop bff
    stop relay
    for entry in "${SERVICES[@]}"; do stop "${entry%%:*}"; done
    stop trace-viewer
    "$HERE/infra.sh" down
    ;;
  status) status ;;
  demo) demo && rest_demo && link_demo ;;
  *) echo "usage: [PROFILE=debug|release] $0 up|down|status|demo [--release]" >&2; exit 2 ;;
esac
