# Shared by deploy/local/pulsar.sh (the standalone broker) and deploy/local/pulsar-cluster.sh (a
# cluster): resolving the jars, the JVM flags, launching a JVM in its own session, finding it
# again, and the admin API calls that make the platform's tenant and namespace. Source it after
# env.sh; it defines functions only (and the paths below).

PULSAR_SRC_DIR="$LOCAL_INFRA_DIR/pulsar"
PULSAR_POM="$PULSAR_SRC_DIR/pom.xml"
PULSAR_PROXY_POM="$PULSAR_SRC_DIR/proxy-pom.xml"
PULSAR_PROXY_LIB_DIR="$PULSAR_HOME/proxy-$PULSAR_PROXY_VERSION"

# curl against the admin API at $PULSAR_ADMIN_URL; with PULSAR_SECURE=1 over HTTPS with our CA
# and the superuser token (given to curl in a header file, so it never shows in `ps`).
admin_curl() {
  if [[ "$PULSAR_SECURE" == 1 ]]; then
    curl --cacert "$PULSAR_TLS_DIR/ca.crt" -H "@$PULSAR_TLS_DIR/admin.header" "$@"
  else
    curl "$@"
  fi
}

http_code() { # http_code METHOD PATH [JSON_BODY]
  local args=(-s -o /dev/null -w '%{http_code}' --max-time 5 -X "$1")
  if [[ $# -ge 3 ]]; then args+=(-H 'Content-Type: application/json' -d "$3"); fi
  admin_curl "${args[@]}" "$PULSAR_ADMIN_URL$2" || true
}

ensure_java() {
  command -v java >/dev/null 2>&1 || infra_die "java not found; run deploy/local/install.sh"
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}')"
  [[ "${major%%.*}" -ge 17 ]] 2>/dev/null || infra_die "Pulsar $PULSAR_VERSION needs Java >= 17 (found '$major')"
}

# mvn_copy POM LIB_DIR STAMP WHAT [-Dkey=value...]: resolves POM's dependencies into LIB_DIR, once
# per content of the pom and arguments (the stamp's first line), under a lock that serialises
# concurrent runs from several clones.
mvn_copy() {
  local pom=$1 lib=$2 stamp=$3 what=$4
  shift 4
  local want
  want="$(sha256sum "$pom" | cut -c1-16) $*"
  if [[ -f "$stamp" && "$(head -n 1 "$stamp")" == "$want" && -d "$lib" ]]; then
    infra_log "$what cached: $lib ($(find "$lib" -name '*.jar' | wc -l) jars)"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || infra_die "mvn not found; run deploy/local/install.sh"
  mkdir -p "$PULSAR_HOME"
  exec 9>"$PULSAR_HOME/.lock"
  flock 9
  if [[ -f "$stamp" && "$(head -n 1 "$stamp")" == "$want" && -d "$lib" ]]; then
    exec 9>&-
    return 0
  fi
  local tmp="$lib.tmp" build="$lib.build" t0 t1 settings=()
  rm -rf "$tmp" "$build"
  if [[ -n "$PULSAR_MVN_SETTINGS" ]]; then settings=(-s "$PULSAR_MVN_SETTINGS"); fi
  infra_log "resolving $what with Maven into $lib (first time: a few minutes)"
  t0=$(date +%s)
  # Maven 3.8's -q still prints bare ANSI reset codes: strip them (pipefail keeps mvn's exit status)
  if ! mvn -B -ntp -q -Dstyle.color=never "${settings[@]}" -f "$pom" dependency:copy-dependencies \
    "$@" -Dpulsar.build.dir="$build" -Dpulsar.lib.dir="$tmp" 2>&1 |
    sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d' >&2; then
    infra_die "Maven could not resolve $what (is it on Maven Central?)"
  fi
  t1=$(date +%s)
  rm -rf "$lib" "$build"
  mv "$tmp" "$lib"
  printf '%s\nresolved %s in %ss: %s jars, %s\n' "$want" "$(date -u +%FT%TZ)" "$((t1 - t0))" \
    "$(find "$lib" -name '*.jar' | wc -l)" "$(du -sh "$lib" | cut -f1)" >"$stamp"
  infra_log "resolved in $((t1 - t0)) s: $(sed -n 2p "$stamp")"
  exec 9>&-
}

# org.apache.pulsar:pulsar-broker and its closure, into the machine-wide cache.
ensure_jars() {
  mvn_copy "$PULSAR_POM" "$PULSAR_LIB_DIR" "$PULSAR_HOME/.complete" "org.apache.pulsar:pulsar-broker:$PULSAR_VERSION" \
    -Dpulsar.version="$PULSAR_VERSION"
  ls "$PULSAR_LIB_DIR"/org.apache.pulsar.pulsar-broker-"$PULSAR_VERSION".jar >/dev/null 2>&1 ||
    infra_die "$PULSAR_LIB_DIR has no pulsar-broker jar"
}

# The Pulsar proxy's jar (and the two libraries it needs that the broker does not), put on the
# classpath before the broker's closure (see proxy-pom.xml for why its version may differ).
ensure_proxy_jars() {
  mvn_copy "$PULSAR_PROXY_POM" "$PULSAR_PROXY_LIB_DIR" "$PULSAR_PROXY_LIB_DIR.complete" \
    "org.apache.pulsar:pulsar-proxy:$PULSAR_PROXY_VERSION" \
    -Dpulsar.version="$PULSAR_VERSION" -Dpulsar.proxy.version="$PULSAR_PROXY_VERSION"
}

# pulsar_jvm LOG_DIR LOG_FILE TMP_DIR MARKER: sets PULSAR_JVM to the flags every Pulsar JVM of
# ours runs with (memory settings are the caller's), as the distribution's bin/pulsar sets them.
pulsar_jvm() {
  PULSAR_JVM=(
    -XX:+ExitOnOutOfMemoryError -Dpulsar.allocator.exit_on_oom=true
    -Djava.net.preferIPv4Stack=true -Djute.maxbuffer=10485760 -Dzookeeper.clientTcpKeepAlive=true
    -Dio.netty.tryReflectionSetAccessible=true -Dio.netty.recycler.maxCapacityPerThread=4096
    --add-opens java.base/java.io=ALL-UNNAMED --add-opens java.base/java.util.zip=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/jdk.internal.misc=ALL-UNNAMED
    --add-opens java.base/sun.net=ALL-UNNAMED
    --add-opens java.management/sun.management=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/jdk.internal.platform=ALL-UNNAMED
    -Dlog4j2.is.webapp=false -Dlog4j.shutdownHookEnabled=false
    "-Dpulsar.log.dir=$1" "-Dpulsar.log.file=$2" -Dpulsar.log.level="${PULSAR_LOG_LEVEL:-info}"
    -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver
    -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver
    "-Djava.io.tmpdir=$3"
    "$4"
  )
}

# launch_java PID_FILE STDOUT_FILE WORK_DIR JAVA_ARGS...: starts java in its own session (setsid),
# so it outlives the calling shell and CI step's process group. The child writes its own pid,
# then execs java (same pid), whether or not setsid had to fork.
launch_java() {
  local pid_file=$1 stdout=$2 dir=$3
  shift 3
  rm -f "$pid_file"
  # shellcheck disable=SC2016  # $$ / $0 / $@ are expanded by the inner bash
  (cd "$dir" && exec setsid bash -c 'echo $$ >"$0"; exec java "$@"' "$pid_file" "$@" \
    </dev/null >>"$stdout" 2>&1) &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s "$pid_file" ]] && break; sleep 0.1; done
}

# live_pid PID_FILE MARKER MAIN_CLASS: prints the pid if that process is alive and is ours (its
# command line holds MARKER and MAIN_CLASS), so `down` never kills someone else's process.
live_pid() {
  local pid
  [[ -f "$1" ]] || return 0
  pid="$(cat "$1" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 0
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$2" || return 0
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$3" || return 0
  echo "$pid"
}

# stop_pid PID WHAT: TERM, then KILL after 15 s; waits until it is gone.
stop_pid() {
  local pid=$1 what=$2 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  infra_log "$what still alive after 15 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

# The platform's tenant (for cluster $1) and namespace, its retention, and with PULSAR_SECURE=1
# the processes' role's grants; idempotent.
ensure_tenant_namespace() {
  local cluster=$1 code body
  # membership is checked on the lists (a GET of a missing tenant makes the broker log an ERROR)
  if ! admin_curl -s --max-time 5 "$PULSAR_ADMIN_URL/admin/v2/tenants" | grep -qF "\"$PULSAR_TENANT\""; then
    body="{\"allowedClusters\":[\"$cluster\"],\"adminRoles\":[]}"
    code="$(http_code PUT "/admin/v2/tenants/$PULSAR_TENANT" "$body")"
    [[ "$code" =~ ^(200|204|409)$ ]] || infra_die "creating tenant $PULSAR_TENANT failed: HTTP $code"
    infra_log "created tenant $PULSAR_TENANT"
  fi
  if ! admin_curl -s --max-time 5 "$PULSAR_ADMIN_URL/admin/v2/namespaces/$PULSAR_TENANT" |
    grep -qF "\"$PULSAR_TENANT/$PULSAR_NAMESPACE\""; then
    code="$(http_code PUT "/admin/v2/namespaces/$PULSAR_TENANT/$PULSAR_NAMESPACE")"
    [[ "$code" =~ ^(200|204|409)$ ]] ||
      infra_die "creating namespace $PULSAR_TENANT/$PULSAR_NAMESPACE failed: HTTP $code"
    infra_log "created namespace $PULSAR_TENANT/$PULSAR_NAMESPACE"
  fi
  if [[ "$PULSAR_SECURE" == 1 ]]; then
    code="$(http_code POST "/admin/v2/namespaces/$PULSAR_TENANT/$PULSAR_NAMESPACE/permissions/$PULSAR_APP_ROLE" '["produce","consume"]')"
    [[ "$code" =~ ^(200|204)$ ]] || infra_die "granting produce and consume to $PULSAR_APP_ROLE failed: HTTP $code"
  fi
  # Retention keeps acknowledged and unsubscribed messages for a while: dead letters survive until
  # an operator looks (`platform dlq list`), and topics can be replayed (`platform tail --from-earliest`).
  for _ in 1 2 3 4 5; do
    code="$(http_code POST "/admin/v2/namespaces/$PULSAR_TENANT/$PULSAR_NAMESPACE/retention" "$PULSAR_RETENTION")"
    [[ "$code" =~ ^(200|204)$ ]] && break
    sleep 1
  done
  [[ "$code" =~ ^(200|204)$ ]] || infra_die "setting retention on $PULSAR_TENANT/$PULSAR_NAMESPACE failed: HTTP $code"
  # Each topic's envelope is a PROTOBUF_NATIVE schema (messaging::schema). FULL_TRANSITIVE: a new
  # version must be readable by and able to read every earlier one, which is what proto3 field
  # rules give and what `buf breaking` (tests/run.sh) checks before a schema reaches the broker.
  code="$(http_code PUT "/admin/v2/namespaces/$PULSAR_TENANT/$PULSAR_NAMESPACE/schemaCompatibilityStrategy" "\"$PULSAR_SCHEMA_COMPATIBILITY\"")"
  [[ "$code" =~ ^(200|204)$ ]] ||
    infra_die "setting the schema compatibility strategy on $PULSAR_TENANT/$PULSAR_NAMESPACE failed: HTTP $code"
}
