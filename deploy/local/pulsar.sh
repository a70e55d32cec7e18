#!/usr/bin/env bash
# A real Apache Pulsar standalone broker on loopback, from Maven Central jars only (no distribution,
# no Docker): org.apache.pulsar:pulsar-broker:$PULSAR_VERSION, PulsarStandaloneStarter -nfw -nss,
# RocksDB metadata store (no ZooKeeper), one in-process bookie.
#
#   deploy/local/pulsar.sh up       resolve jars (cached per version), start, wait for the admin API,
#                                   create tenant $PULSAR_TENANT and namespace $PULSAR_TENANT/$PULSAR_NAMESPACE
#   deploy/local/pulsar.sh down     stop the broker this script started (TERM, KILL after 15 s)
#   deploy/local/pulsar.sh status   print state, ports, memory, tenants/namespaces
#   deploy/local/pulsar.sh kill     SIGKILL the broker, as a crash would (fault tests); `up` recovers
#   deploy/local/pulsar.sh reset    stop the broker and delete its data (every topic and message)
#   deploy/local/pulsar.sh freeze   SIGSTOP the broker: its connections stay open and nothing answers on
#                                   them, as in a long GC pause or a stuck disk (fault tests)
#   deploy/local/pulsar.sh thaw     SIGCONT it (`up` also thaws a frozen broker first)
#
# Secured: PULSAR_SECURE=1 ... up runs the broker with TLS only (pulsar+ssl://127.0.0.1:$PULSAR_TLS_PORT,
#        https://127.0.0.1:$PULSAR_HTTPS_PORT), token authentication and authorization. The first start
#        makes a local CA, the broker's certificate, a token secret key and tokens in $PULSAR_TLS_DIR
#        (mode 600): admin (superuser, used by this script), $PULSAR_APP_ROLE (the processes: produce
#        and consume on the namespace), expired.token and forged.token (for tests). Clients take
#        PULSAR_TLS_CA_FILE=$PULSAR_TLS_DIR/ca.crt and PULSAR_TOKEN_FILE=$PULSAR_TLS_DIR/platform.token.
# Jars:  $PULSAR_LIB_DIR (= ~/.cache/affiliate-platform/pulsar/<version>/lib), resolved with
#        deploy/local/pulsar/pom.xml; re-resolved only if the version or the pom changes.
# Data:  $STATE_DIR/pulsar/data: the metadata store and the bookie's journal and ledgers, kept
#        across stops and crashes (a restart brings back every topic, subscription, cursor and
#        unacknowledged message); only `reset` deletes it. The two dirs always move together
#        (`up` refuses a data dir that has one without the other).
# Durability: a publish is acknowledged once the one bookie has written it to its journal AND
#        fsynced it (journalSyncData=true; ack quorum 1 of 1), and the RocksDB metadata store
#        fsyncs its writes (fsyncEnable, on by default), so a SIGKILL or a power cut loses no
#        acknowledged message. Consumer acknowledgements are persisted lazily (cursor ledger, at
#        most once a second), so after a crash some acknowledged messages come again: the
#        consumers' inbox skips them.
# Bookie: 127.0.0.1:$PULSAR_BOOKIE_PORT (3181), fixed: it is the bookie's identity in its cookie
#        and in every ledger. After a crash, the dead broker's registrations are cleared before
#        the next start (pulsar/StaleEphemeralNodes.java says why).
# Logs:  $STATE_DIR/logs/pulsar.log (broker, log4j2) and pulsar-stdout.log (JVM stdout/stderr).
# URLs:  pulsar://127.0.0.1:6650 (binary), http://127.0.0.1:8080 (admin REST, /metrics).
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# shellcheck source=pulsar/common.sh
source "$LOCAL_INFRA_DIR/pulsar/common.sh"
PULSAR_RUN_CONF_DIR="$STATE_DIR/pulsar/conf"
PULSAR_PID_FILE="$PID_DIR/pulsar.pid"
PULSAR_LOG_FILE="$LOG_DIR/pulsar.log"
PULSAR_STDOUT_FILE="$LOG_DIR/pulsar-stdout.log"
# identifies our JVM in /proc/<pid>/cmdline, so `down` never kills someone else's process
PULSAR_MARKER="-Daffiliate.platform.stateDir=$STATE_DIR"

# ---- helpers ----------------------------------------------------------------------------------
our_pid() { live_pid "$PULSAR_PID_FILE" "$PULSAR_MARKER" org.apache.pulsar.PulsarStandaloneStarter; }

admin_ready() { [[ "$(http_code GET /admin/v2/namespaces/public/default)" == 200 ]]; }

# The secured broker's material, made once: a CA and a broker certificate for 127.0.0.1 and
# localhost (openssl), a token secret key and HS256 tokens (the broker's own TokensCliUtils): admin
# (superuser: the scripts), $PULSAR_APP_ROLE (the processes), and for tests an expired token and one
# signed with another key. Every file is mode 600 in a mode 700 directory.
ensure_tls_material() {
  local d="$PULSAR_TLS_DIR"
  if [[ -s "$d/admin.token" && -s "$d/broker.crt" && -s "$d/$PULSAR_APP_ROLE.token" ]]; then return 0; fi
  infra_log "making the secured broker's CA, certificate, secret key and tokens in $d"
  mkdir -p "$d"
  chmod 700 "$d"
  (
    umask 077
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=affiliate-platform local CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out broker.crt -days 3650 \
      -extfile broker.ext 2>/dev/null
    local tokens=(java -cp "$PULSAR_LIB_DIR/*" org.apache.pulsar.utils.auth.tokens.TokensCliUtils)
    "${tokens[@]}" create-secret-key --output secret.key 2>/dev/null
    "${tokens[@]}" create-secret-key --output other.key 2>/dev/null
    "${tokens[@]}" create --secret-key "file://$d/secret.key" --subject admin 2>/dev/null >admin.token
    "${tokens[@]}" create --secret-key "file://$d/secret.key" --subject "$PULSAR_APP_ROLE" 2>/dev/null >"$PULSAR_APP_ROLE.token"
    "${tokens[@]}" create --secret-key "file://$d/secret.key" --subject "$PULSAR_APP_ROLE" --expiry-time 1s 2>/dev/null >expired.token
    "${tokens[@]}" create --secret-key "file://$d/other.key" --subject admin 2>/dev/null >forged.token
    printf 'Authorization: Bearer %s\n' "$(tr -d '\n' <admin.token)" >admin.header
    rm -f broker.csr broker.ext ca.srl other.key
  )
  local f
  for f in admin.token "$PULSAR_APP_ROLE.token" expired.token forged.token broker.crt ca.crt; do
    [[ -s "$d/$f" ]] || infra_die "making $d/$f failed"
  done
}

render_conf() {
  mkdir -p "$PULSAR_RUN_CONF_DIR"
  sed -e "s/^brokerServicePort=.*/brokerServicePort=$PULSAR_PORT/" \
    -e "s/^webServicePort=.*/webServicePort=$PULSAR_HTTP_PORT/" \
    -e "s/^clusterName=.*/clusterName=$PULSAR_CLUSTER_NAME/" \
    -e "s/^bookiePort=.*/bookiePort=$PULSAR_BOOKIE_PORT/" \
    "$PULSAR_SRC_DIR/conf/standalone.conf" >"$PULSAR_RUN_CONF_DIR/standalone.conf"
  cp "$PULSAR_SRC_DIR/conf/log4j2.xml" "$PULSAR_RUN_CONF_DIR/log4j2.xml"
  if [[ "$PULSAR_SECURE" == 1 ]]; then
    local conf="$PULSAR_RUN_CONF_DIR/standalone.conf" d="$PULSAR_TLS_DIR"
    # TLS only: the plain ports are closed; token authentication and authorization on.
    sed -i -e 's/^brokerServicePort=.*/brokerServicePort=/' -e 's/^webServicePort=.*/webServicePort=/' \
      -e '/^authenticationEnabled=/d' -e '/^authorizationEnabled=/d' "$conf"
    cat >>"$conf" <<CONF

### ---------------------------------------------------------------- PULSAR_SECURE=1 (pulsar.sh)
brokerServicePortTls=$PULSAR_TLS_PORT
webServicePortTls=$PULSAR_HTTPS_PORT
tlsCertificateFilePath=$d/broker.crt
tlsKeyFilePath=$d/broker.key
tlsTrustCertsFilePath=$d/ca.crt
tlsAllowInsecureConnection=false
authenticationEnabled=true
authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken
tokenSecretKey=file://$d/secret.key
authorizationEnabled=true
superUserRoles=admin
authenticateMetricsEndpoint=true
brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken
brokerClientAuthenticationParameters=file://$d/admin.token
brokerClientTlsEnabled=true
brokerClientTrustCertsFilePath=$d/ca.crt
CONF
  fi
}

# The bookie port this data dir belongs to: the one in the bookie's cookie (BookKeeper re-adopts
# it on every start, whatever the configuration says), or $PULSAR_BOOKIE_PORT for a new data dir.
bookie_port() {
  local cookie="$PULSAR_DATA_DIR/bookkeeper/current/VERSION" host
  host="$(sed -n 's/^bookieHost: "\(.*\)"$/\1/p' "$cookie" 2>/dev/null | head -n 1)"
  if [[ -n "$host" ]]; then echo "${host##*:}"; else echo "$PULSAR_BOOKIE_PORT"; fi
}

# The metadata store and the bookie's journal and ledgers are one unit: the metadata holds the
# cluster's instance id and every ledger's ensemble, the bookie dir holds the cookie naming the
# same instance id. One without the other is a broken data dir; say so instead of wiping it.
check_data_dir() {
  local meta="$PULSAR_DATA_DIR/metadata" bk="$PULSAR_DATA_DIR/bookkeeper/current/VERSION"
  if [[ -d "$meta" && ! -f "$bk" ]]; then
    infra_die "$PULSAR_DATA_DIR has a metadata store but no bookie data ($bk is missing): the broker cannot read its ledgers. Restore the bookie dir, or delete every topic and message with \`$0 reset\`"
  fi
  if [[ -f "$bk" && ! -d "$meta" ]]; then
    infra_die "$PULSAR_DATA_DIR has bookie data but no metadata store ($meta is missing): the bookie's cookie names a cluster that no longer exists. Restore the metadata dir, or delete every topic and message with \`$0 reset\`"
  fi
}

# After a crash (SIGKILL, OOM, power loss) the metadata store still holds the dead broker's
# ephemeral registrations; clear them before the broker starts (see pulsar/StaleEphemeralNodes.java).
clear_stale_registrations() {
  [[ -d "$PULSAR_DATA_DIR/metadata" ]] || return 0
  local out
  if ! out="$(cd "$PULSAR_DATA_DIR" && java -Djava.io.tmpdir="$PULSAR_DATA_DIR/tmp" -cp "$PULSAR_LIB_DIR/*" \
    "$PULSAR_SRC_DIR/StaleEphemeralNodes.java" "$PULSAR_DATA_DIR/metadata" 2>&1)"; then
    printf '%s\n' "$out" | grep -vE '^\s+at ' | tail -n 20 >&2
    infra_die "could not open Pulsar's metadata store $PULSAR_DATA_DIR/metadata (is another broker using it?)"
  fi
  local path
  for path in $(printf '%s\n' "$out" | grep -oE 'Deleting path: [^ ]+' | cut -d' ' -f3 || true); do
    infra_log "cleared the stale registration $path of a broker that did not stop cleanly"
  done
}

start_broker() {
  local p bookie ports
  check_data_dir
  bookie="$(bookie_port)"
  if [[ "$PULSAR_SECURE" == 1 ]]; then ports=("$PULSAR_TLS_PORT" "$PULSAR_HTTPS_PORT"); else ports=("$PULSAR_PORT" "$PULSAR_HTTP_PORT"); fi
  for p in "${ports[@]}" "$bookie"; do
    if infra_port_in_use "$p"; then
      ss -Hltnp "sport = :$p" >&2 || true
      infra_die "port $p is already in use by another process (set PULSAR_PORT / PULSAR_HTTP_PORT / PULSAR_BOOKIE_PORT; the bookie's port of an existing data dir is fixed by its cookie)"
    fi
  done
  ensure_java
  ensure_jars
  if [[ "$PULSAR_SECURE" == 1 ]]; then ensure_tls_material; fi
  render_conf
  # Only the scratch dir starts empty; the data dir is never wiped here: a broker restarts on its
  # metadata AND bookie dirs together (`reset` deletes both, explicitly).
  rm -rf "$PULSAR_DATA_DIR/tmp"
  mkdir -p "$PULSAR_DATA_DIR/tmp" "$LOG_DIR" "$PID_DIR"
  clear_stale_registrations
  for p in "$PULSAR_LOG_FILE" "$PULSAR_STDOUT_FILE"; do
    if [[ -f "$p" ]]; then mv -f "$p" "$p.1"; fi
  done
  # an inherited PULSAR_STANDALONE_USE_ZOOKEEPER=1 would switch to ZooKeeper mode
  unset PULSAR_STANDALONE_USE_ZOOKEEPER
  pulsar_jvm "$LOG_DIR" pulsar.log "$PULSAR_DATA_DIR/tmp" "$PULSAR_MARKER"
  # shellcheck disable=SC2206
  local jvm=(
    $PULSAR_MEM_OPTS $PULSAR_GC_OPTS "${PULSAR_JVM[@]}"
    "-Dlog4j.configurationFile=$PULSAR_RUN_CONF_DIR/log4j2.xml"
    -cp "$PULSAR_RUN_CONF_DIR:$PULSAR_LIB_DIR/*"
    org.apache.pulsar.PulsarStandaloneStarter
    --config "$PULSAR_RUN_CONF_DIR/standalone.conf"
    --no-functions-worker --no-stream-storage
    --advertised-address "$PULSAR_HOST"
    --metadata-dir "$PULSAR_DATA_DIR/metadata"
    --bookkeeper-dir "$PULSAR_DATA_DIR/bookkeeper"
    --bookkeeper-port "$bookie"
    --zookeeper-dir "$PULSAR_DATA_DIR/zookeeper-unused"
  )
  infra_log "starting Pulsar $PULSAR_VERSION standalone on $PULSAR_URL / $PULSAR_ADMIN_URL, bookie 127.0.0.1:$bookie (logs $LOG_DIR/pulsar*.log)"
  PULSAR_LAUNCH_MS=$(date +%s%3N)
  launch_java "$PULSAR_PID_FILE" "$PULSAR_STDOUT_FILE" "$PULSAR_DATA_DIR" "${jvm[@]}"
}

wait_ready() { # wait_ready START_EPOCH_MS
  local t0=$1 deadline pid now
  deadline=$(($(date +%s) + PULSAR_READY_TIMEOUT))
  while :; do
    pid="$(our_pid)"
    if [[ -z "$pid" ]]; then
      infra_log "Pulsar exited during startup; last lines of $PULSAR_STDOUT_FILE and $PULSAR_LOG_FILE:"
      tail -n 20 "$PULSAR_STDOUT_FILE" >&2 || true
      grep -E 'ERROR|Exception' "$PULSAR_LOG_FILE" 2>/dev/null | tail -n 20 >&2 || true
      exit 1
    fi
    if admin_ready; then break; fi
    if (($(date +%s) >= deadline)); then
      grep -E 'ERROR' "$PULSAR_LOG_FILE" 2>/dev/null | tail -n 20 >&2 || true
      infra_die "Pulsar (pid $pid) not ready after ${PULSAR_READY_TIMEOUT}s: GET $PULSAR_ADMIN_URL/admin/v2/namespaces/public/default != 200"
    fi
    sleep 0.5
  done
  now=$(date +%s%3N)
  local bs
  bs="$(grep -oE 'bootstrap_seconds=[0-9]+' "$PULSAR_LOG_FILE" 2>/dev/null | tail -n 1 | cut -d= -f2 || true)"
  infra_log "Pulsar ready $(awk -v ms=$((now - t0)) 'BEGIN {printf "%.1f", ms/1000}') s after launching java (pid $pid${bs:+, broker bootstrap_seconds=$bs})"
}

# ---- commands ---------------------------------------------------------------------------------
cmd_up() {
  local pid
  pid="$(our_pid)"
  # a broker left frozen (a fault test that was interrupted) is continued, never waited for
  if [[ -n "$pid" ]] && infra_stopped "$pid"; then cmd_thaw; fi
  if [[ -n "$pid" ]] && admin_ready; then
    infra_log "Pulsar already running (pid $pid) and ready on $PULSAR_URL"
  elif [[ -n "$pid" ]]; then
    infra_log "Pulsar (pid $pid) is running but not ready yet; waiting"
    wait_ready "$(date +%s%3N)"
  else
    start_broker
    wait_ready "$PULSAR_LAUNCH_MS"
  fi
  ensure_tenant_namespace "$PULSAR_CLUSTER_NAME"
  infra_log "Pulsar ready: $PULSAR_URL (admin $PULSAR_ADMIN_URL), namespace $PULSAR_TENANT/$PULSAR_NAMESPACE"
}

cmd_down() {
  local pid i
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    infra_log "Pulsar not running (no live process from $PULSAR_PID_FILE)"
    rm -f "$PULSAR_PID_FILE"
    return 0
  fi
  infra_log "stopping Pulsar (pid $pid)"
  stop_pid "$pid" Pulsar
  rm -f "$PULSAR_PID_FILE"
  infra_log "Pulsar stopped"
}

cmd_kill() {
  local pid
  pid="$(our_pid)"
  [[ -n "$pid" ]] || infra_die "Pulsar is not running (no live process from $PULSAR_PID_FILE): nothing to kill"
  infra_log "killing Pulsar (pid $pid) with SIGKILL"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$PULSAR_PID_FILE"
}

# sends SIG$1 to the broker, saying $2 (freeze / thaw)
signal_broker() {
  local pid
  pid="$(our_pid)"
  [[ -n "$pid" ]] || infra_die "Pulsar is not running (no live process from $PULSAR_PID_FILE): nothing to $2"
  infra_log "$2: Pulsar (pid $pid) gets SIG$1"
  kill "-$1" "$pid"
}
cmd_freeze() { signal_broker STOP freeze; }
cmd_thaw() { signal_broker CONT thaw; }

cmd_reset() {
  cmd_down
  infra_log "deleting Pulsar's data: $PULSAR_DATA_DIR"
  rm -rf "$PULSAR_DATA_DIR"
}

cmd_status() {
  local pid
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    echo "pulsar: stopped"
    return 3
  fi
  echo "pulsar: running, pid $pid, version $PULSAR_VERSION, RSS $(($(ps -o rss= -p "$pid") / 1024)) MiB, logs $LOG_DIR/pulsar*.log"
  echo "  admin ready: $(admin_ready && echo yes || echo no) ($PULSAR_ADMIN_URL)"
  echo "  listening:"
  ss -Hltnp 2>/dev/null | grep -F "pid=$pid," | awk '{print "    " $4}' || true
  echo "  tenants: $(admin_curl -s --max-time 5 "$PULSAR_ADMIN_URL/admin/v2/tenants" || echo '?')"
  echo "  namespaces of $PULSAR_TENANT: $(admin_curl -s --max-time 5 "$PULSAR_ADMIN_URL/admin/v2/namespaces/$PULSAR_TENANT" || echo '?')"
  echo "  url: $PULSAR_URL"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kill) cmd_kill ;;
  reset) cmd_reset ;;
  freeze) cmd_freeze ;;
  thaw) cmd_thaw ;;
  *) echo "usage: $0 up|down|status|kill|reset|freeze|thaw" >&2; exit 2 ;;
esac
