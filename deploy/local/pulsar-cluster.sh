#!/usr/bin/env bash
# A real Apache Pulsar cluster on loopback, from the same Maven Central jars as pulsar.sh: a
# ZooKeeper metadata store (from the broker's own dependency closure), three bookies, two brokers
# and a Pulsar proxy in front of them. Clients reach the cluster through the proxy, as they would
# through a Kubernetes service: one address that survives the loss of a broker.
#
#   deploy/local/pulsar-cluster.sh up            start whatever is not running (ZooKeeper, cluster
#                                                metadata once, bookies, brokers, proxy), wait for
#                                                each, create tenant $PULSAR_TENANT and namespace
#                                                $PULSAR_TENANT/$PULSAR_NAMESPACE
#   deploy/local/pulsar-cluster.sh down          stop the proxy, the brokers, the bookies, ZooKeeper
#   deploy/local/pulsar-cluster.sh status        every process: pid, memory, ports; the brokers
#   deploy/local/pulsar-cluster.sh kill NAME     SIGKILL one process (broker-1, bookie-2, ...), as a
#                                                crash would; `up` starts it again
#   deploy/local/pulsar-cluster.sh owner TOPIC   the broker (broker-1 or broker-2) that serves a
#                                                topic: a short name of the platform's namespace,
#                                                or NAMESPACE/TOPIC in the tenant $PULSAR_TENANT
#   deploy/local/pulsar-cluster.sh reset         stop everything and delete the cluster's data
#
# Platform: PULSAR_CLUSTER=1 deploy/local/platform.sh up runs the platform against it; env.sh then
#        points PULSAR_URL at the proxy, pulsar://127.0.0.1:$PULSAR_PROXY_PORT, and PULSAR_ADMIN_URL at
#        the proxy's admin forwarding, http://127.0.0.1:$PULSAR_PROXY_HTTP_PORT.
# Durability: every ledger is written to 2 of the 3 bookies and a publish is acknowledged once
#        both have fsynced it (ensemble 2, write quorum 2, ack quorum 2, journalSyncData=true), so
#        one bookie can be lost (the ledger's ensemble moves to the third) without losing or
#        blocking anything.
# Failover: a broker's topics are its as long as its ZooKeeper session lives. When it dies, the
#        session expires after $PULSAR_CLUSTER_SESSION_TIMEOUT_MS ms and the other broker takes
#        the topics over. Each namespace has one bundle here, so one broker owns all of a
#        namespace's topics and killing it moves every one of them.
# Data:  $PULSAR_CLUSTER_DIR/data/<process>, kept across stops and crashes; only `reset` deletes it.
# Logs:  $LOG_DIR/pulsar-cluster/<process>.log (log4j2) and <process>-stdout.log.
# Ports: ZooKeeper $PULSAR_CLUSTER_ZK_PORT; bookies $PULSAR_CLUSTER_BOOKIE_PORTS; brokers
#        $PULSAR_CLUSTER_BROKER_PORTS (admin $PULSAR_CLUSTER_BROKER_HTTP_PORTS); proxy
#        $PULSAR_PROXY_PORT (admin $PULSAR_PROXY_HTTP_PORT). All on 127.0.0.1.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=pulsar/common.sh
source "$LOCAL_INFRA_DIR/pulsar/common.sh"

CLUSTER_NAME=local-cluster
CONF_DIR="$PULSAR_CLUSTER_DIR/conf"
DATA_DIR="$PULSAR_CLUSTER_DIR/data"
CLOG_DIR="$LOG_DIR/pulsar-cluster"
CPID_DIR="$PID_DIR/pulsar-cluster"
MARKER="-Daffiliate.platform.pulsarCluster=$PULSAR_CLUSTER_DIR"
ZK="127.0.0.1:$PULSAR_CLUSTER_ZK_PORT"
read -r -a BOOKIE_PORTS <<<"$PULSAR_CLUSTER_BOOKIE_PORTS"
read -r -a BROKER_PORTS <<<"$PULSAR_CLUSTER_BROKER_PORTS"
read -r -a BROKER_HTTP_PORTS <<<"$PULSAR_CLUSTER_BROKER_HTTP_PORTS"
# The cluster's own admin URL (the proxy's); the scripts' admin calls go there.
PULSAR_ADMIN_URL="http://$PULSAR_HOST:$PULSAR_PROXY_HTTP_PORT"
# PULSAR_SECURE applies to the standalone broker only.
PULSAR_SECURE=0

BOOKIES=()
for ((i = 1; i <= ${#BOOKIE_PORTS[@]}; i++)); do BOOKIES+=("bookie-$i"); done
BROKERS=()
for ((i = 1; i <= ${#BROKER_PORTS[@]}; i++)); do BROKERS+=("broker-$i"); done
PROCESSES=(zookeeper "${BOOKIES[@]}" "${BROKERS[@]}" proxy)

main_class() {
  case "$1" in
    zookeeper) echo org.apache.zookeeper.server.ZooKeeperServerMain ;;
    bookie-*) echo org.apache.bookkeeper.server.Main ;;
    broker-*) echo org.apache.pulsar.PulsarBrokerStarter ;;
    proxy) echo org.apache.pulsar.proxy.server.ProxyServiceStarter ;;
    *) infra_die "no process '$1' in the cluster (one of: ${PROCESSES[*]})" ;;
  esac
}

index_of() { echo "${1##*-}"; } # broker-2 -> 2

pid_of() { live_pid "$CPID_DIR/$1.pid" "$MARKER" "$(main_class "$1")"; }

port_of() {
  case "$1" in
    zookeeper) echo "$PULSAR_CLUSTER_ZK_PORT" ;;
    bookie-*) echo "${BOOKIE_PORTS[$(($(index_of "$1") - 1))]}" ;;
    broker-*) echo "${BROKER_PORTS[$(($(index_of "$1") - 1))]}" ;;
    proxy) echo "$PULSAR_PROXY_PORT" ;;
  esac
}

listening() { infra_port_in_use "$1"; }

zk_ok() { # ZooKeeper's four-letter `ruok` over bash's /dev/tcp (there is no nc here)
  local reply
  reply="$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PULSAR_CLUSTER_ZK_PORT; printf ruok >&3; cat <&3" 2>/dev/null || true)"
  [[ "$reply" == imok ]]
}

broker_ready() { # broker_ready NAME
  local http="${BROKER_HTTP_PORTS[$(($(index_of "$1") - 1))]}"
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$http/admin/v2/brokers/ready" || true)" == 200 ]]
}

proxy_ready() {
  listening "$PULSAR_PROXY_PORT" && [[ "$(http_code GET /admin/v2/clusters)" == 200 ]]
}

ready() { # ready NAME
  case "$1" in
    zookeeper) zk_ok ;;
    bookie-*) listening "$(port_of "$1")" ;;
    broker-*) broker_ready "$1" ;;
    proxy) proxy_ready ;;
  esac
}

# ---- configuration ----------------------------------------------------------------------------
render_confs() {
  mkdir -p "$CONF_DIR"
  cp "$PULSAR_SRC_DIR/conf/log4j2.xml" "$CONF_DIR/log4j2.xml"
  cat >"$CONF_DIR/zookeeper.cfg" <<CONF
# written by pulsar-cluster.sh
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$DATA_DIR/zookeeper
clientPort=$PULSAR_CLUSTER_ZK_PORT
clientPortAddress=127.0.0.1
# else its AdminServer (Jetty) binds 8080, the standalone broker's port
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,srvr
maxClientCnxns=0
# purge old snapshots and transaction logs (kept: 3), hourly
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
CONF
  local i name port
  for ((i = 1; i <= ${#BOOKIE_PORTS[@]}; i++)); do
    name="bookie-$i" port="${BOOKIE_PORTS[$((i - 1))]}"
    cat >"$CONF_DIR/$name.conf" <<CONF
# written by pulsar-cluster.sh
bookiePort=$port
advertisedAddress=127.0.0.1
listeningInterface=lo
allowLoopback=true
metadataServiceUri=zk+hierarchical://$ZK/ledgers
journalDirectories=$DATA_DIR/$name/journal
ledgerDirectories=$DATA_DIR/$name/ledgers
ledgerStorageClass=org.apache.bookkeeper.bookie.storage.ldb.DbLedgerStorage
dbStorage_writeCacheMaxSizeMb=32
dbStorage_readAheadCacheMaxSizeMb=32
dbStorage_rocksDB_blockCacheSize=16777216
# an entry is acknowledged only once it is fsynced in the journal
journalSyncData=true
journalWriteData=true
journalMaxGroupWaitMSec=1
httpServerEnabled=false
# no auto-recovery daemon: a lost bookie's ledgers are re-replicated by hand in this local setup
autoRecoveryDaemonEnabled=false
diskUsageThreshold=0.99
diskUsageWarnThreshold=0.99
zkTimeout=$PULSAR_CLUSTER_SESSION_TIMEOUT_MS
CONF
  done
  for ((i = 1; i <= ${#BROKER_PORTS[@]}; i++)); do
    cat >"$CONF_DIR/broker-$i.conf" <<CONF
# written by pulsar-cluster.sh
clusterName=$CLUSTER_NAME
metadataStoreUrl=zk:$ZK
configurationMetadataStoreUrl=zk:$ZK
metadataStoreSessionTimeoutMillis=$PULSAR_CLUSTER_SESSION_TIMEOUT_MS
brokerServicePort=${BROKER_PORTS[$((i - 1))]}
webServicePort=${BROKER_HTTP_PORTS[$((i - 1))]}
bindAddress=127.0.0.1
advertisedAddress=127.0.0.1
# 2 copies of every entry, both acknowledged before the publish is: one bookie may be lost
managedLedgerDefaultEnsembleSize=2
managedLedgerDefaultWriteQuorum=2
managedLedgerDefaultAckQuorum=2
managedLedgerCacheSizeMB=32
# one bundle per namespace: one broker serves all of a namespace's topics (see the header)
defaultNumberOfNamespaceBundles=1
loadBalancerAutoBundleSplitEnabled=false
allowAutoTopicCreation=true
allowAutoTopicCreationType=non-partitioned
allowAutoSubscriptionCreation=true
forceDeleteNamespaceAllowed=true
brokerDeleteInactiveTopicsEnabled=false
systemTopicEnabled=true
topicLevelPoliciesEnabled=true
brokerDeduplicationEnabled=false
isAllowAutoUpdateSchemaEnabled=true
schemaCompatibilityStrategy=FULL
transactionCoordinatorEnabled=false
functionsWorkerEnabled=false
webSocketServiceEnabled=false
enablePackagesManagement=false
brokerShutdownTimeoutMs=5000
nettyMaxFrameSizeBytes=5253120
CONF
  done
  local targets
  targets="$(
    IFS=,
    echo "${BROKER_PORTS[*]}"
  )"
  cat >"$CONF_DIR/proxy.conf" <<CONF
# written by pulsar-cluster.sh
clusterName=$CLUSTER_NAME
# brokers are discovered in the metadata store; lookups are answered by the proxy itself
metadataStoreUrl=zk:$ZK
configurationMetadataStoreUrl=zk:$ZK
metadataStoreSessionTimeoutMillis=$PULSAR_CLUSTER_SESSION_TIMEOUT_MS
servicePort=$PULSAR_PROXY_PORT
webServicePort=$PULSAR_PROXY_HTTP_PORT
bindAddress=127.0.0.1
advertisedAddress=127.0.0.1
# the brokers' binary ports (the default allows only 6650 and 6651)
brokerProxyAllowedTargetPorts=$targets
CONF
}

# ---- processes --------------------------------------------------------------------------------
start_process() { # start_process NAME
  local name=$1 class mem conf args=()
  class="$(main_class "$name")"
  case "$name" in
    zookeeper)
      mem=(-Xms128m -Xmx128m)
      args=("$CONF_DIR/zookeeper.cfg")
      ;;
    bookie-*)
      mem=(-Xms256m -Xmx256m -XX:MaxDirectMemorySize=256m)
      args=(--conf "$CONF_DIR/$name.conf")
      ;;
    broker-*)
      mem=(-Xms512m -Xmx512m -XX:MaxDirectMemorySize=256m)
      args=(--broker-conf "$CONF_DIR/$name.conf")
      ;;
    proxy)
      mem=(-Xms256m -Xmx256m -XX:MaxDirectMemorySize=256m)
      args=(--config "$CONF_DIR/proxy.conf")
      ;;
  esac
  local port
  port="$(port_of "$name")"
  if listening "$port"; then
    ss -Hltnp "sport = :$port" >&2 || true
    infra_die "port $port ($name) is already in use by another process"
  fi
  local dir="$DATA_DIR/$name" classpath="$CONF_DIR:$PULSAR_LIB_DIR/*"
  if [[ "$name" == proxy ]]; then classpath="$CONF_DIR:$PULSAR_PROXY_LIB_DIR/*:$PULSAR_LIB_DIR/*"; fi
  rm -rf "$dir/tmp"
  mkdir -p "$dir/tmp" "$CLOG_DIR" "$CPID_DIR"
  local f
  for f in "$CLOG_DIR/$name.log" "$CLOG_DIR/$name-stdout.log"; do
    if [[ -f "$f" ]]; then mv -f "$f" "$f.1"; fi
  done
  pulsar_jvm "$CLOG_DIR" "$name.log" "$dir/tmp" "$MARKER"
  # shellcheck disable=SC2206
  local jvm=("${mem[@]}" $PULSAR_GC_OPTS "${PULSAR_JVM[@]}" "-Dlog4j.configurationFile=$CONF_DIR/log4j2.xml"
    -Dzookeeper.4lw.commands.whitelist=ruok,stat,srvr -cp "$classpath" "$class" "${args[@]}")
  launch_java "$CPID_DIR/$name.pid" "$CLOG_DIR/$name-stdout.log" "$dir" "${jvm[@]}"
}

wait_for() { # wait_for NAME...: until each is ready, or one died, or the timeout
  local deadline name pending=("$@") left t0
  t0=$(date +%s%3N)
  deadline=$(($(date +%s) + PULSAR_READY_TIMEOUT))
  while ((${#pending[@]})); do
    left=()
    for name in "${pending[@]}"; do
      if [[ -z "$(pid_of "$name")" ]]; then
        infra_log "$name exited during startup; last lines of $CLOG_DIR/$name-stdout.log and $name.log:"
        tail -n 20 "$CLOG_DIR/$name-stdout.log" >&2 || true
        grep -E 'ERROR|Exception' "$CLOG_DIR/$name.log" 2>/dev/null | tail -n 20 >&2 || true
        exit 1
      fi
      if ready "$name"; then
        infra_log "$name ready ($(awk -v ms=$(($(date +%s%3N) - t0)) 'BEGIN {printf "%.1f", ms/1000}') s, pid $(pid_of "$name"))"
      else
        left+=("$name")
      fi
    done
    pending=(${left[@]+"${left[@]}"})
    if ((${#pending[@]})); then
      (($(date +%s) < deadline)) || infra_die "not ready after ${PULSAR_READY_TIMEOUT}s: ${pending[*]} (logs in $CLOG_DIR)"
      sleep 0.5
    fi
  done
}

start_missing() { # start_missing NAME...: starts those not running, then waits for all of them
  local name
  for name in "$@"; do
    if [[ -z "$(pid_of "$name")" ]]; then
      infra_log "starting $name (logs $CLOG_DIR/$name*.log)"
      start_process "$name"
    fi
  done
  wait_for "$@"
}

# The cluster's metadata (its name and URLs, and BookKeeper's under /ledgers), once.
setup_metadata() {
  local stamp="$DATA_DIR/zookeeper/.cluster-metadata"
  [[ -f "$stamp" ]] && return 0
  local urls_http="" urls_pulsar="" i
  for ((i = 0; i < ${#BROKER_PORTS[@]}; i++)); do
    urls_http+="${urls_http:+,}127.0.0.1:${BROKER_HTTP_PORTS[i]}"
    urls_pulsar+="${urls_pulsar:+,}127.0.0.1:${BROKER_PORTS[i]}"
  done
  infra_log "writing the cluster's metadata ($CLUSTER_NAME) to ZooKeeper"
  pulsar_jvm "$CLOG_DIR" setup.log "$DATA_DIR/zookeeper" "$MARKER"
  if ! java -Xmx256m "${PULSAR_JVM[@]}" "-Dlog4j.configurationFile=$CONF_DIR/log4j2.xml" \
    -cp "$CONF_DIR:$PULSAR_LIB_DIR/*" org.apache.pulsar.PulsarClusterMetadataSetup \
    --cluster "$CLUSTER_NAME" --metadata-store "zk:$ZK" --configuration-metadata-store "zk:$ZK" \
    --web-service-url "http://$urls_http" --broker-service-url "pulsar://$urls_pulsar" \
    >>"$CLOG_DIR/setup-stdout.log" 2>&1; then
    tail -n 20 "$CLOG_DIR/setup-stdout.log" >&2
    infra_die "PulsarClusterMetadataSetup failed (log $CLOG_DIR/setup*.log)"
  fi
  touch "$stamp"
}

# ---- commands ---------------------------------------------------------------------------------
cmd_up() {
  local t0 name
  t0=$(date +%s%3N)
  ensure_java
  ensure_jars
  ensure_proxy_jars
  render_confs
  mkdir -p "$DATA_DIR" "$CLOG_DIR" "$CPID_DIR"
  start_missing zookeeper
  setup_metadata
  start_missing "${BOOKIES[@]}"
  start_missing "${BROKERS[@]}"
  start_missing proxy
  ensure_tenant_namespace "$CLUSTER_NAME"
  local rss=0
  for name in "${PROCESSES[@]}"; do rss=$((rss + $(ps -o rss= -p "$(pid_of "$name")"))); done
  infra_log "Pulsar cluster ready in $(awk -v ms=$(($(date +%s%3N) - t0)) 'BEGIN {printf "%.1f", ms/1000}') s: pulsar://$PULSAR_HOST:$PULSAR_PROXY_PORT (admin $PULSAR_ADMIN_URL), ${#BOOKIES[@]} bookies, ${#BROKERS[@]} brokers, RSS $((rss / 1024)) MiB in all, namespace $PULSAR_TENANT/$PULSAR_NAMESPACE"
}

cmd_down() {
  local name pid order=(proxy "${BROKERS[@]}" "${BOOKIES[@]}" zookeeper)
  # Brokers before bookies before ZooKeeper: a broker whose metadata store vanished hangs on exit.
  for name in "${order[@]}"; do
    pid="$(pid_of "$name")"
    if [[ -n "$pid" ]]; then
      infra_log "stopping $name (pid $pid)"
      stop_pid "$pid" "$name"
    fi
    rm -f "$CPID_DIR/$name.pid"
  done
  infra_log "Pulsar cluster stopped"
}

cmd_kill() {
  local name=${1:?usage: $0 kill NAME} pid
  pid="$(pid_of "$name")"
  [[ -n "$pid" ]] || infra_die "$name is not running: nothing to kill"
  infra_log "killing $name (pid $pid) with SIGKILL"
  kill -KILL "$pid"
  while [[ -n "$(pid_of "$name")" ]]; do sleep 0.1; done
  rm -f "$CPID_DIR/$name.pid"
}

cmd_owner() {
  local topic=${1:?usage: $0 owner [NAMESPACE/]TOPIC} answer url i
  # a short name is in the platform's namespace; NAMESPACE/TOPIC in another of its tenant
  if [[ "$topic" != */* ]]; then topic="$PULSAR_NAMESPACE/$topic"; fi
  answer="$(curl -s -L --max-time 10 "$PULSAR_ADMIN_URL/lookup/v2/topic/persistent/$PULSAR_TENANT/$topic")"
  url="$(printf '%s' "$answer" | sed -n 's/.*"brokerUrl" *: *"\([^"]*\)".*/\1/p')"
  [[ -n "$url" ]] || infra_die "no owner for $topic: $answer"
  for ((i = 0; i < ${#BROKER_PORTS[@]}; i++)); do
    if [[ "$url" == "pulsar://127.0.0.1:${BROKER_PORTS[i]}" ]]; then
      echo "broker-$((i + 1))"
      return 0
    fi
  done
  infra_die "$topic is served by $url, which is none of this cluster's brokers"
}

cmd_reset() {
  cmd_down
  infra_log "deleting the Pulsar cluster's data: $DATA_DIR"
  rm -rf "$DATA_DIR"
}

cmd_status() {
  local name pid running=0
  for name in "${PROCESSES[@]}"; do
    pid="$(pid_of "$name")"
    if [[ -n "$pid" ]]; then
      running=$((running + 1))
      printf '%-10s running, pid %s, RSS %s MiB, port %s, ready: %s\n' "$name" "$pid" \
        "$(($(ps -o rss= -p "$pid") / 1024))" "$(port_of "$name")" "$(ready "$name" && echo yes || echo no)"
    else
      printf '%-10s stopped\n' "$name"
    fi
  done
  if proxy_ready; then
    echo "brokers: $(admin_curl -s --max-time 5 "$PULSAR_ADMIN_URL/admin/v2/brokers/$CLUSTER_NAME" || echo '?')"
    echo "namespaces of $PULSAR_TENANT: $(admin_curl -s --max-time 5 "$PULSAR_ADMIN_URL/admin/v2/namespaces/$PULSAR_TENANT" || echo '?')"
  fi
  echo "url: pulsar://$PULSAR_HOST:$PULSAR_PROXY_PORT (admin $PULSAR_ADMIN_URL)"
  ((running == ${#PROCESSES[@]})) || return 3
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kill) cmd_kill "${2:-}" ;;
  owner) cmd_owner "${2:-}" ;;
  reset) cmd_reset ;;
  *) echo "usage: $0 up|down|status|kill NAME|owner TOPIC|reset" >&2; exit 2 ;;
esac
