#!/usr/bin/env bash
# Builds the local cluster's binaries and images into $TETHER_CLUSTER_CACHE:
#
#   k8s      kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#            kube-proxy and kubectl as one multi-call binary (src/k8s)
#   coredns  CoreDNS with a minimal plugin set, no "forward" (src/coredns)
#   tools    pause and clustertool, small static programs (src/tools)
#   mkimage  the image builder of the main module (hack/mkimage)
#   images   pause, coredns and clustertool image tarballs (images.sh)
#
# usage: build.sh [NAME...]   (default: all of them)
#
# An artifact whose key (sources + flags + Go version, see lib.sh) is already
# in the cache is not rebuilt. Compiles run one at a time under nice -n 19 and
# idle I/O priority: a cold build takes 6-15 minutes on 2 shared cores, and
# other people's tests keep their CPU.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$TETHER_CLUSTER_DIR/lib.sh"

command -v go >/dev/null || die "go is not on PATH"
export CGO_ENABLED=0 GOFLAGS="$BUILD_GOFLAGS" GOTOOLCHAIN=local
mkdir -p "$TETHER_CLUSTER_CACHE/bin" "$TETHER_CLUSTER_CACHE/images"

# One build at a time per machine (two checkouts share the cache).
exec 9> "$TETHER_CLUSTER_CACHE/build.lock"
if ! flock -n 9; then
  log "another build of the cluster is running; waiting for it"
  flock 9
fi

low_prio() { nice -n 19 ionice -c 3 "$@"; }

# build_artifact NAME FUNCTION: runs FUNCTION TMPDIR unless NAME's key is cached.
build_artifact() {
  local name=$1 fn=$2 dir tmp start=$SECONDS
  dir=$(artifact_dir "$name")
  if [ -f "$dir/.complete" ]; then touch "$dir"; log "$name: cached ($dir)"; return 0; fi
  tmp=$(mktemp -d "$TETHER_CLUSTER_CACHE/bin/.$name.XXXXXX")
  log "$name: building into $dir"
  if ! "$fn" "$tmp"; then rm -rf "$tmp"; die "$name: build failed"; fi
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  log "$name: built in $(( SECONDS - start ))s"
}

build_k8s() {
  local out=$1 c
  (cd "$TETHER_CLUSTER_DIR/src/k8s" && low_prio go build -trimpath -tags "$K8S_TAGS" -ldflags "$K8S_LDFLAGS" -o "$out/k8s" .)
  for c in "${K8S_COMMANDS[@]}"; do ln -s k8s "$out/$c"; done
}

build_coredns() {
  (cd "$TETHER_CLUSTER_DIR/src/coredns" && low_prio go build -trimpath -ldflags "$SMALL_LDFLAGS" -o "$1/coredns" .)
}

build_tools() {
  (cd "$TETHER_CLUSTER_DIR/src/tools" && low_prio go build -trimpath -ldflags "$SMALL_LDFLAGS" -o "$1/" ./pause ./clustertool)
}

build_mkimage() {
  (cd "$TETHER_REPO_DIR" && low_prio go build -trimpath -ldflags "$SMALL_LDFLAGS" -o "$1/mkimage" ./hack/mkimage)
}

build_images() {
  local dir start=$SECONDS
  dir=$(images_dir)
  if [ -f "$dir/.complete" ]; then touch "$dir"; log "images: cached ($dir)"; return 0; fi
  rm -rf "$dir.tmp"
  MKIMAGE="$(artifact_dir mkimage)/mkimage" TOOLS_DIR=$(artifact_dir tools) COREDNS_DIR=$(artifact_dir coredns) \
    "$TETHER_CLUSTER_DIR/images.sh" "$dir.tmp"
  touch "$dir.tmp/.complete"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  log "images: built in $(( SECONDS - start ))s ($dir)"
}

# Entries not used for 30 days (sources or Go changed since) go away.
find "$TETHER_CLUSTER_CACHE/bin" "$TETHER_CLUSTER_CACHE/images" -mindepth 1 -maxdepth 1 -type d -mtime +30 \
  -exec rm -rf {} + 2>/dev/null || true

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(k8s coredns tools mkimage images)
for t in "${targets[@]}"; do
  case $t in
    k8s | coredns | tools | mkimage) build_artifact "$t" "build_$t" ;;
    images) build_artifact tools build_tools; build_artifact coredns build_coredns; build_artifact mkimage build_mkimage; build_images ;;
    *) die "unknown target $t (want: k8s coredns tools mkimage images)" ;;
  esac
done
