#!/usr/bin/env bash
# Makes the container world of this project on a machine without a Docker engine (the CI kind:
# Debian 12, 2 cores, no systemd, registries other than the package ones unreachable):
#
#   1. apt: podman, buildah, runc, netavark, aardvark-dns, iptables (netavark's firewall driver runs it),
#      catatonit (kube play's pause), mmdebstrap, uidmap (deploy/local/install.sh --apt-only)
#   2. a Debian 12 base made by mmdebstrap from Debian's mirror (localhost/affiliate-standin/debian)
#   3. stand-ins for the base images our files name, built from deploy/containers/stand-ins and
#      tagged with exactly those names (each Containerfile says where it differs from upstream):
#        gcr.io/distroless/cc-debian12:nonroot, postgres:15-bookworm, apachepulsar/pulsar:$PULSAR_VERSION
#      and with --full also the Dockerfile's builders rust:1.95.0-bookworm and golang:1.26-bookworm
#      (made from this machine's rustup toolchain and Go)
#   4. Docker Compose $COMPOSE_VERSION, built from the Go module proxy, and grpc-health-probe
#      $GRPC_HEALTH_PROBE_VERSION (go install), both kept in $CONTAINERS_CACHE
#
# Podman's settings come from deploy/containers/containers.conf through CONTAINERS_CONF
# (deploy/containers/env.sh); nothing under /etc is edited. Idempotent: a stand-in is rebuilt only
# when its inputs changed (their hash is a label of the image); a warm run takes seconds.
#
# Usage: deploy/containers/setup.sh [--full]
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=../local/pulsar/common.sh
source "$REPO_ROOT/deploy/local/pulsar/common.sh"

full=0
case "${1:-}" in
  --full) full=1 ;;
  "") ;;
  *) infra_die "usage: deploy/containers/setup.sh [--full]" ;;
esac

t0=$(date +%s)
mkdir -p "$CONTAINERS_CACHE" "$CONTAINERS_STATE"

# ---- 1. packages ----------------------------------------------------------------------------
LOCAL_INFRA_EXTRA_APT_PACKAGES="podman buildah runc netavark aardvark-dns iptables catatonit mmdebstrap uidmap ${LOCAL_INFRA_EXTRA_APT_PACKAGES:-}" \
  "$REPO_ROOT/deploy/local/install.sh" --apt-only
podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}' >/dev/null ||
  infra_die "podman does not work with $CONTAINERS_CONF (see podman info)"

# ---- helpers --------------------------------------------------------------------------------
LABEL=org.affiliate-platform.standin-inputs
image_label() { podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }

# inputs_hash DIR...: a hash of the files under the directories (names and contents), the base
# image's id and the hashes of any extra words given after --
inputs_hash() {
  local dirs=() extra=()
  while (($#)); do
    if [[ "$1" == -- ]]; then shift; extra=("$@"); break; fi
    dirs+=("$1"); shift
  done
  {
    podman image inspect --format '{{.Id}}' "$STANDIN_DEBIAN"
    printf '%s\n' "${extra[@]}"
    find "${dirs[@]}" -type f -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

# standin NAME CONTEXT TAG [--hash-extra WORDS...]: builds CONTEXT's Containerfile as TAG unless
# an image of that name was built from the same inputs
standin() {
  local name=$1 context=$2 tag=$3 hash
  shift 3
  hash="$(inputs_hash "$context" -- "$@")"
  if [[ "$(image_label "$tag")" == "$hash" ]]; then
    infra_log "stand-in $name: $tag is up to date"
    return
  fi
  infra_log "stand-in $name: building $tag (log $CONTAINERS_STATE/build-$name.log)"
  local t=$SECONDS
  # --network host: the builds fetch Debian packages, and netavark (which the projects' networks
  # need for their DNS) gives containers no outbound NAT on these machines
  if ! podman build --pull=never --network host --label "$LABEL=$hash" -t "$tag" -f "$context/Containerfile" \
    "$context" >"$CONTAINERS_STATE/build-$name.log" 2>&1; then
    tail -n 30 "$CONTAINERS_STATE/build-$name.log" >&2
    infra_die "building the $name stand-in failed (log $CONTAINERS_STATE/build-$name.log)"
  fi
  infra_log "stand-in $name: built in $((SECONDS - t)) s ($(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}'))"
}

# ---- 2. the Debian base ---------------------------------------------------------------------
if ! podman image exists "$STANDIN_DEBIAN"; then
  infra_log "making $STANDIN_DEBIAN with mmdebstrap (Debian's mirror; about a minute)"
  rootfs="$CONTAINERS_CACHE/debian-bookworm.tar"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$rootfs" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  podman import --change 'CMD ["bash"]' "$rootfs" "$STANDIN_DEBIAN" >/dev/null
  rm -f "$rootfs"
fi

# ---- 3. stand-ins ---------------------------------------------------------------------------
STANDINS="$CONTAINERS_DIR/stand-ins"
standin distroless "$STANDINS/distroless" "$DISTROLESS_IMAGE_NAME"
standin postgres "$STANDINS/postgres" "$POSTGRES_IMAGE_NAME"

# Pulsar: the broker's jars (as deploy/local resolves them from Maven Central) and deploy/local's
# configuration, made to listen on every address of the container
ensure_jars
ctx="$CONTAINERS_CACHE/contexts/pulsar"
mkdir -p "$ctx/lib" "$ctx/conf" "$ctx/bin"
rsync_like() { # rsync_like SRC DST: DST holds exactly SRC's files (hard links where possible)
  find "$2" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  cp -al "$1"/. "$2"/ 2>/dev/null || cp -a "$1"/. "$2"/
}
rsync_like "$PULSAR_LIB_DIR" "$ctx/lib"
rsync_like "$STANDINS/pulsar/bin" "$ctx/bin"
cp "$STANDINS/pulsar/Containerfile" "$ctx/Containerfile"
sed -e 's/^bindAddress=.*/bindAddress=0.0.0.0/' -e 's/^advertisedAddress=.*/advertisedAddress=/' \
  "$PULSAR_SRC_DIR/conf/standalone.conf" >"$ctx/conf/standalone.conf"
cp "$PULSAR_SRC_DIR/conf/log4j2.xml" "$ctx/conf/log4j2.xml"
standin pulsar "$ctx" "$PULSAR_IMAGE_NAME"

# copy_extra_ca CONTEXT: the host's own CAs (a proxy's, say) for the builders, which download
copy_extra_ca() {
  mkdir -p "$1/extra-ca"
  find "$1/extra-ca" -mindepth 1 -delete
  touch "$1/extra-ca/.none-beyond-debians"
  if [[ -d /usr/local/share/ca-certificates ]]; then cp -a /usr/local/share/ca-certificates/. "$1/extra-ca/"; fi
}

if [[ "$full" == 1 ]]; then
  # the Dockerfile's builders, from this machine's toolchains (no registry holds them here)
  rust_version="$(sed -n 's/^ARG RUST_VERSION=//p' "$REPO_ROOT/Dockerfile")"
  sysroot="$(rustup run "$rust_version" rustc --print sysroot)"
  ctx="$CONTAINERS_CACHE/contexts/rust"
  mkdir -p "$ctx/toolchain" "$ctx/cargo-bin"
  rsync_like "$sysroot" "$ctx/toolchain"
  rm -rf "$ctx/toolchain/share/doc" "$ctx/toolchain/lib/rustlib/src"
  cp -f "$(command -v rustup)" "$ctx/cargo-bin/rustup"
  cp "$STANDINS/rust/Containerfile" "$ctx/Containerfile"
  copy_extra_ca "$ctx"
  standin rust "$ctx" "$RUST_IMAGE_NAME" -- "rust $rust_version $(rustc +"$rust_version" --version)"

  go_version="$(sed -n 's/^ARG GO_VERSION=//p' "$REPO_ROOT/Dockerfile")"
  goroot="$(go env GOROOT)"
  [[ "$(go env GOVERSION)" == "go$go_version"* ]] ||
    infra_die "the Dockerfile's GO_VERSION is $go_version, this machine's Go is $(go env GOVERSION)"
  ctx="$CONTAINERS_CACHE/contexts/golang"
  mkdir -p "$ctx/go"
  rsync_like "$goroot" "$ctx/go"
  cp "$STANDINS/golang/Containerfile" "$ctx/Containerfile"
  copy_extra_ca "$ctx"
  standin golang "$ctx" "$GOLANG_IMAGE_NAME" -- "$(go env GOVERSION)"
fi

# ---- 4. Docker Compose and grpc-health-probe ------------------------------------------------
if [[ ! -x "$COMPOSE_BIN" ]]; then
  infra_log "building Docker Compose $COMPOSE_VERSION from the Go module proxy (about 2 minutes, once)"
  mod="$CONTAINERS_CACHE/compose-$COMPOSE_VERSION/module"
  mkdir -p "$mod"
  (
    cd "$mod"
    [[ -f go.mod ]] || go mod init compose-build >/dev/null 2>&1
    go get "github.com/docker/compose/v2@$COMPOSE_VERSION" >/dev/null 2>&1
    printf 'package main\n\nimport _ "github.com/docker/compose/v2/cmd/compatibility"\n\nfunc main() {}\n' >main.go
    go mod tidy >/dev/null 2>&1
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
      -o "$COMPOSE_BIN.tmp" github.com/docker/compose/v2/cmd
  )
  mv -f "$COMPOSE_BIN.tmp" "$COMPOSE_BIN"
fi
if [[ ! -x "$GRPC_HEALTH_PROBE_BIN" ]]; then
  infra_log "go install grpc-health-probe $GRPC_HEALTH_PROBE_VERSION"
  mkdir -p "$(dirname "$GRPC_HEALTH_PROBE_BIN")"
  CGO_ENABLED=0 GOBIN="$(dirname "$GRPC_HEALTH_PROBE_BIN")" \
    go install "github.com/grpc-ecosystem/grpc-health-probe@$GRPC_HEALTH_PROBE_VERSION"
fi

infra_log "container world ready in $(($(date +%s) - t0)) s: $(podman --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}'), Docker Compose $("$COMPOSE_BIN" version --short)"
