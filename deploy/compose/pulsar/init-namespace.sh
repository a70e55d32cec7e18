#!/usr/bin/env bash
# The one-shot `pulsar-init` job of compose.yaml: the platform's tenant and namespace on the
# standalone broker, as deploy/local/pulsar.sh (ensure_tenant_namespace) makes them. Idempotent:
# an existing tenant or namespace is left alone (HTTP 409), the retention is set again.
#
# Topics and subscriptions need nothing: the broker creates them (non-partitioned) when a
# producer or consumer first names them.
set -euo pipefail
admin="${PULSAR_ADMIN_URL:?}"
tenant="${PULSAR_TENANT:?}"
namespace="${PULSAR_NAMESPACE:?}"
cluster="${PULSAR_CLUSTER:-standalone}"
# 7 days or 1 GiB: dead letters and replays survive without a subscription (PULSAR_RETENTION
# in deploy/local/env.sh; the services' idempotency and inbox retention is the same 7 days).
default_retention='{"retentionTimeInMinutes":10080,"retentionSizeInMB":1024}'
retention="${PULSAR_RETENTION:-$default_retention}"

put() { # put PATH [JSON]: PUT or POST, prints the HTTP status
  local method=$1 path=$2 body=${3:-}
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" \
    ${body:+-H 'Content-Type: application/json' -d "$body"} "$admin$path"
}

code=$(put PUT "/admin/v2/tenants/$tenant" "{\"allowedClusters\":[\"$cluster\"],\"adminRoles\":[]}")
[[ "$code" =~ ^(200|204|409)$ ]] || { echo "creating tenant $tenant failed: HTTP $code" >&2; exit 1; }
code=$(put PUT "/admin/v2/namespaces/$tenant/$namespace")
[[ "$code" =~ ^(200|204|409)$ ]] || { echo "creating namespace $tenant/$namespace failed: HTTP $code" >&2; exit 1; }
code=$(put POST "/admin/v2/namespaces/$tenant/$namespace/retention" "$retention")
[[ "$code" =~ ^(200|204)$ ]] || { echo "setting retention on $tenant/$namespace failed: HTTP $code" >&2; exit 1; }
# The envelopes' PROTOBUF_NATIVE schemas (messaging::schema): see docs/design.md.
code=$(put PUT "/admin/v2/namespaces/$tenant/$namespace/schemaCompatibilityStrategy" '"FULL_TRANSITIVE"')
[[ "$code" =~ ^(200|204)$ ]] || { echo "setting the schema compatibility strategy on $tenant/$namespace failed: HTTP $code" >&2; exit 1; }
echo "namespace $tenant/$namespace ready (retention $retention, schema compatibility FULL_TRANSITIVE)"
