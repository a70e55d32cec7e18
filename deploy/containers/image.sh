#!/usr/bin/env bash
# Makes the platform's image ($PLATFORM_IMAGE, localhost/affiliate-platform:dev) with podman, on a
# machine prepared by deploy/containers/setup.sh:
#
#   deploy/containers/image.sh full                 # the Dockerfile, all its stages (needs
#                                                   # `setup.sh --full`): the release build runs in
#                                                   # the image; its cargo cache mounts stay in
#                                                   # /var/tmp/buildah-cache between builds
#   deploy/containers/image.sh packed [debug|release]
#                                                   # the binaries $CARGO_TARGET_DIR/<profile> already
#                                                   # holds, packed onto the Dockerfile's own runtime stage
#
# `packed` is what the tests use: they have just built the workspace, and a second (release)
# build of it inside the image would cost CI 11 minutes cold. Its Containerfile is made from the
# Dockerfile at every run: the global ARGs and every line of the runtime stage, with only its
# two `COPY --from=` lines pointing at the packed files instead (the binaries with their debug
# sections stripped, and grpc-health-probe built by setup.sh), so the image's base, user, labels,
# ports and command cannot drift from the Dockerfile's.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

LOG="$CONTAINERS_STATE/image.log"
mkdir -p "$CONTAINERS_STATE"

build() { # build CONTEXT CONTAINERFILE [podman build args...]
  local context=$1 file=$2 t=$SECONDS
  shift 2
  infra_log "podman build $PLATFORM_IMAGE (log $LOG)"
  if ! podman build --pull=never -t "$PLATFORM_IMAGE" -f "$file" "$@" "$context" >"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    infra_die "building $PLATFORM_IMAGE failed (log $LOG)"
  fi
  infra_log "built $PLATFORM_IMAGE in $((SECONDS - t)) s: $(podman image inspect --format '{{.Size}}' "$PLATFORM_IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"
}

cmd_full() {
  podman image exists "$RUST_IMAGE_NAME" && podman image exists "$GOLANG_IMAGE_NAME" ||
    infra_die "the builder stand-ins are missing: run deploy/containers/setup.sh --full"
  # --network host: the build fetches crates, Debian packages and Go modules (see setup.sh)
  build "$REPO_ROOT" "$REPO_ROOT/Dockerfile" --network host
}

# packed_containerfile DOCKERFILE: prints the runtime stage with the packed files' COPY lines
packed_containerfile() {
  python3 - "$1" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
froms = [i for i, l in enumerate(lines) if l.startswith("FROM ")]
if not froms:
    sys.exit("Dockerfile: no FROM")
global_args = [l for l in lines[: froms[0]] if l.startswith("ARG ")]
stage = lines[froms[-1]:]
replaced = {"builder": 0, "grpc-health-probe": 0}
out = ["# Made by deploy/containers/image.sh from the Dockerfile's global ARGs and runtime stage;",
       "# only the COPY --from lines differ. Do not edit: it is written again at every run.",
       *global_args]
for line in stage:
    m = re.match(r"^COPY --from=(\S+) (\S+) (\S+)$", line)
    if m and m.group(1) == "builder":
        line, replaced["builder"] = f"COPY bin/ {m.group(3)}", 1
    elif m and m.group(1) == "grpc-health-probe":
        line, replaced["grpc-health-probe"] = f"COPY probe/grpc-health-probe {m.group(3)}", 1
    elif m:
        sys.exit(f"Dockerfile's runtime stage copies from an unknown stage: {line}")
    out.append(line)
missing = [k for k, v in replaced.items() if not v]
if missing:
    sys.exit(f"Dockerfile's runtime stage has no COPY --from={' / --from='.join(missing)} line")
print("\n".join(out))
PY
}

cmd_packed() {
  local profile=${1:-debug}
  [[ "$profile" =~ ^(debug|release)$ ]] || infra_die "usage: image.sh packed [debug|release]"
  local target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$profile"
  local ctx="$CONTAINERS_CACHE/contexts/packed-$profile" bins
  [[ -x "$GRPC_HEALTH_PROBE_BIN" ]] || infra_die "no grpc-health-probe: run deploy/containers/setup.sh"
  bins="$(sed -n 's/^ARG BINARIES="\([^"]*\)"/\1/p' "$REPO_ROOT/Dockerfile")"
  [[ -n "$bins" ]] || infra_die "the Dockerfile has no ARG BINARIES"
  mkdir -p "$ctx/bin" "$ctx/probe"
  find "$ctx/bin" -mindepth 1 -delete
  local bin
  for bin in $bins; do
    [[ -x "$target/$bin" ]] ||
      infra_die "$target/$bin is missing: build the workspace first (cargo build --workspace --bins --locked, with --release for release)"
    strip --strip-debug -o "$ctx/bin/$bin" "$target/$bin"
  done
  cp -f "$GRPC_HEALTH_PROBE_BIN" "$ctx/probe/grpc-health-probe"
  packed_containerfile "$REPO_ROOT/Dockerfile" >"$ctx/Containerfile"
  build "$ctx" "$ctx/Containerfile" --label "org.affiliate-platform.packed=$profile"
}

case "${1:-}" in
  full) cmd_full ;;
  packed) cmd_packed "${2:-debug}" ;;
  containerfile) packed_containerfile "$REPO_ROOT/Dockerfile" ;;
  *) infra_die "usage: deploy/containers/image.sh full | packed [debug|release] | containerfile" ;;
esac
