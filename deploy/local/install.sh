#!/usr/bin/env bash
# Installs the machine prerequisites of the local infrastructure; whatever is present is left as it is:
#   apt:  postgresql, protobuf-compiler (+ libprotobuf-dev: google/protobuf/*.proto well-known types),
#         and, only if their commands are missing: java/javac (openjdk-17-jdk-headless), mvn (maven),
#         curl, ss (iproute2); plus $LOCAL_INFRA_EXTRA_APT_PACKAGES if set
#   go:   grpcurl  (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest  -> $GO_BIN_DIR)
#   npm:  buf      (npm install @bufbuild/buf --prefix $NPM_TOOLS_PREFIX           -> $BUF_BIN)
#   pip:  schemathesis $SCHEMATHESIS_VERSION in the venv $PY_TOOLS_VENV             -> $SCHEMATHESIS_BIN
#         pulsar-client $PULSAR_CLIENT_PY_VERSION and protobuf $PROTOBUF_PY_VERSION there too -> $PY_TOOLS_PYTHON
#         standardwebhooks $STANDARDWEBHOOKS_PY_VERSION there too (the tests' webhook receiver)
#   cargo: cargo-deny $CARGO_DENY_VERSION (cargo install --locked --root $CARGO_TOOLS_ROOT) -> $CARGO_DENY_BIN
#          cargo-machete $CARGO_MACHETE_VERSION (the same way)                    -> $CARGO_MACHETE_BIN
# `apt-get update` runs once, and only when an apt package is missing. Waits for the apt/dpkg lock.
# Usage: deploy/local/install.sh [--apt-only]   (idempotent; prints what it installed vs found)
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

installed=()
found=()
missing=()

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); fi
fi

pkg_installed() { [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]; }

# apt-get with a wait for the dpkg lock (another apt-get may be running) and a retry loop for the
# lists lock of `apt-get update`, which DPkg::Lock::Timeout does not always cover.
apt_run() {
  local tries=0 out rc
  while :; do
    set +e
    out="$(DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get -y -q -o DPkg::Lock::Timeout=600 "$@" 2>&1)"
    rc=$?
    set -e
    if [[ $rc -eq 0 ]]; then printf '%s\n' "$out" | tail -n 3 >&2; return 0; fi
    if grep -qiE 'could not get lock|unable to lock|is another process using it' <<<"$out" && ((tries++ < 60)); then
      infra_log "apt is locked by another process; waiting (try $tries)"
      sleep 10
      continue
    fi
    printf '%s\n' "$out" >&2
    return "$rc"
  done
}

# ---- apt packages ---------------------------------------------------------------------------
apt_missing=()
need_pkg() { # need_pkg <package> [command]: missing if the package is not installed (or the command is absent)
  local pkg=$1 cmd=${2:-}
  if [[ -n "$cmd" ]]; then
    if command -v "$cmd" >/dev/null 2>&1; then found+=("$cmd ($(command -v "$cmd"))"); return; fi
  elif pkg_installed "$pkg"; then
    found+=("apt:$pkg"); return
  fi
  apt_missing+=("$pkg")
}
need_pkg postgresql
need_pkg protobuf-compiler
need_pkg libprotobuf-dev
need_pkg openjdk-17-jdk-headless java
need_pkg openjdk-17-jdk-headless javac
need_pkg maven mvn
need_pkg curl curl
need_pkg iproute2 ss
# extra apt packages, space-separated (e.g. LOCAL_INFRA_EXTRA_APT_PACKAGES="shellcheck jq")
for p in ${LOCAL_INFRA_EXTRA_APT_PACKAGES:-}; do need_pkg "$p"; done

if ((${#apt_missing[@]})); then
  mapfile -t apt_missing < <(printf '%s\n' "${apt_missing[@]}" | sort -u)
  if [[ "$(id -u)" != 0 && ${#SUDO[@]} -eq 0 ]]; then
    infra_die "missing apt packages: ${apt_missing[*]} (run this script as root, or install them: apt-get install ${apt_missing[*]})"
  fi
  infra_log "apt-get update (missing: ${apt_missing[*]})"
  apt_run update
  infra_log "apt-get install ${apt_missing[*]}"
  apt_run install --no-install-recommends "${apt_missing[@]}"
  for p in "${apt_missing[@]}"; do installed+=("apt:$p"); done
fi

# `install.sh --apt-only`: the apt packages only (deploy/containers/setup.sh adds its own through
# LOCAL_INFRA_EXTRA_APT_PACKAGES)
if [[ "${1:-}" == --apt-only ]]; then
  infra_log "apt packages: installed ${installed[*]:-(nothing)}; found ${#found[@]}"
  exit 0
fi

# ---- grpcurl (Go) ---------------------------------------------------------------------------
if command -v grpcurl >/dev/null 2>&1; then
  found+=("grpcurl ($(command -v grpcurl))")
elif command -v go >/dev/null 2>&1; then
  infra_log "go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest -> $GO_BIN_DIR"
  mkdir -p "$GO_BIN_DIR"
  GOBIN="$GO_BIN_DIR" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest
  installed+=("grpcurl ($GO_BIN_DIR/grpcurl)")
else
  missing+=("grpcurl: no 'go' on PATH (needs Go >= 1.21); install Go, then rerun")
fi

# ---- buf (npm) ------------------------------------------------------------------------------
if [[ -x "$BUF_BIN" ]] && "$BUF_BIN" --version >/dev/null 2>&1; then
  found+=("buf ($BUF_BIN)")
elif command -v npm >/dev/null 2>&1; then
  infra_log "npm install @bufbuild/buf --prefix $NPM_TOOLS_PREFIX"
  mkdir -p "$NPM_TOOLS_PREFIX"
  # --prefix would also move npm's global config to $NPM_TOOLS_PREFIX/etc/npmrc: name the machine's
  # own (its cafile, proxy or registry mirror) so that it still applies.
  npm_globalconfig="$(npm config get globalconfig 2>/dev/null || true)"
  # the prebuilt binary comes through an optional dependency: never pass --omit=optional
  npm install --prefix "$NPM_TOOLS_PREFIX" ${npm_globalconfig:+--globalconfig "$npm_globalconfig"} \
    --no-audit --no-fund --loglevel=error @bufbuild/buf >&2
  "$BUF_BIN" --version >/dev/null
  installed+=("buf ($BUF_BIN)")
else
  missing+=("buf: no 'npm' on PATH (apt-get install npm), then rerun")
fi

# ---- schemathesis (PyPI, in a venv) --------------------------------------------------------
if [[ -x "$SCHEMATHESIS_BIN" ]] && [[ "$("$SCHEMATHESIS_BIN" --version 2>/dev/null)" == *"$SCHEMATHESIS_VERSION"* ]]; then
  found+=("schemathesis ($SCHEMATHESIS_BIN)")
elif command -v python3 >/dev/null 2>&1; then
  infra_log "pip install schemathesis==$SCHEMATHESIS_VERSION -> $PY_TOOLS_VENV"
  if [[ ! -x "$PY_TOOLS_VENV/bin/pip" ]]; then
    python3 -m venv "$PY_TOOLS_VENV" || { apt_run install --no-install-recommends python3-venv && python3 -m venv "$PY_TOOLS_VENV"; }
  fi
  "$PY_TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
  "$SCHEMATHESIS_BIN" --version >/dev/null
  installed+=("schemathesis ($SCHEMATHESIS_BIN)")
else
  missing+=("schemathesis: no 'python3' on PATH (apt-get install python3 python3-venv), then rerun")
fi

# ---- the Python Pulsar client and protobuf (PyPI, the same venv) ---------------------------
py_has() { "$PY_TOOLS_PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }
if [[ -x "$PY_TOOLS_PYTHON" ]] && py_has pulsar-client "$PULSAR_CLIENT_PY_VERSION" && py_has protobuf "$PROTOBUF_PY_VERSION"; then
  found+=("pulsar-client $PULSAR_CLIENT_PY_VERSION, protobuf $PROTOBUF_PY_VERSION ($PY_TOOLS_VENV)")
elif [[ -x "$PY_TOOLS_VENV/bin/pip" ]]; then
  infra_log "pip install pulsar-client==$PULSAR_CLIENT_PY_VERSION protobuf==$PROTOBUF_PY_VERSION -> $PY_TOOLS_VENV"
  "$PY_TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "pulsar-client==$PULSAR_CLIENT_PY_VERSION" "protobuf==$PROTOBUF_PY_VERSION" >&2
  installed+=("pulsar-client $PULSAR_CLIENT_PY_VERSION, protobuf $PROTOBUF_PY_VERSION ($PY_TOOLS_VENV)")
else
  missing+=("pulsar-client: no venv at $PY_TOOLS_VENV (see schemathesis above), then rerun")
fi

# ---- the official Standard Webhooks library (PyPI, the same venv): the tests' partner receiver
# (tests/python/webhook_receiver.py) verifies every webhook with it, not with our code ---------
if [[ -x "$PY_TOOLS_PYTHON" ]] && py_has standardwebhooks "$STANDARDWEBHOOKS_PY_VERSION"; then
  found+=("standardwebhooks $STANDARDWEBHOOKS_PY_VERSION ($PY_TOOLS_VENV)")
elif [[ -x "$PY_TOOLS_VENV/bin/pip" ]]; then
  infra_log "pip install standardwebhooks==$STANDARDWEBHOOKS_PY_VERSION -> $PY_TOOLS_VENV"
  "$PY_TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "standardwebhooks==$STANDARDWEBHOOKS_PY_VERSION" >&2
  installed+=("standardwebhooks $STANDARDWEBHOOKS_PY_VERSION ($PY_TOOLS_VENV)")
else
  missing+=("standardwebhooks: no venv at $PY_TOOLS_VENV (see schemathesis above), then rerun")
fi

# ---- cargo tools (crates.io): cargo-deny (supply chain) and cargo-machete (unused dependencies),
# both for tests/run.sh ----------------------------------------------------------------------
cargo_tool() { # name version binary [cargo install flags...]
  local name="$1" version="$2" bin="$3"
  shift 3
  if [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == *"$version"* ]]; then
    found+=("$name ($bin)")
  elif command -v cargo >/dev/null 2>&1; then
    infra_log "cargo install $name@$version --locked -> $CARGO_TOOLS_ROOT (first time: a few minutes)"
    cargo install --quiet --locked --root "$CARGO_TOOLS_ROOT" "$@" "$name@$version" >&2
    installed+=("$name ($bin)")
  else
    missing+=("$name: no 'cargo' on PATH (install Rust with rustup), then rerun")
  fi
}
cargo_tool cargo-deny "$CARGO_DENY_VERSION" "$CARGO_DENY_BIN"
cargo_tool cargo-machete "$CARGO_MACHETE_VERSION" "$CARGO_MACHETE_BIN"
# sqlx-cli: migrations and the compile-time query data (.sqlx/) of each crate, PostgreSQL only
cargo_tool sqlx-cli "$SQLX_CLI_VERSION" "$SQLX_BIN" --no-default-features --features postgres,rustls

# ---- report ---------------------------------------------------------------------------------
{
  echo "install.sh summary"
  if ((${#installed[@]})); then printf '  installed: %s\n' "${installed[@]}"; else echo "  installed: (nothing)"; fi
  printf '  found:     %s\n' "${found[@]}"
  if ((${#missing[@]})); then printf '  MISSING:   %s\n' "${missing[@]}"; fi
  echo "  versions:  protoc $(protoc --version 2>/dev/null | awk '{print $2}'), postgres $("$PG_BINDIR/postgres" --version 2>/dev/null | awk '{print $3}'), grpcurl $(go version -m "$(command -v grpcurl)" 2>/dev/null | awk '$1 == "mod" {print $3}' || true), buf $("$BUF_BIN" --version 2>/dev/null || echo '?'), java $(java -version 2>&1 | awk -F'"' '/version/ {print $2}'), mvn $(mvn -v 2>/dev/null | awk '/Apache Maven/ {print $3}' | head -n1 | sed 's/\x1b\[[0-9;]*m//g')"
  echo "PATH additions (or: source deploy/local/env.sh):"
  echo "  export PATH=\"$GO_BIN_DIR:$BUF_BIN_DIR:\$PATH\""
  echo "  BUF_BIN=$BUF_BIN"
  echo "  SCHEMATHESIS_BIN=$SCHEMATHESIS_BIN"
} >&2
