#!/usr/bin/env bash
# Imports docker-archive image tarballs into the cluster's containerd (the
# k8s.io namespace, where the kubelet looks), so pods can use them without a
# registry: `ctr -n k8s.io images import`.
#
# usage: import-images.sh [--if-up] [TARBALL...]
#   Without TARBALLs: the cluster's own images (from the build cache) and every
#   *.tar in $TETHER_PRODUCT_IMAGES (default: .cache/images of the repo, where
#   `make images` puts the product's images). up.sh calls it this way.
#   --if-up: exit quietly if the cluster is not running (up.sh imports later).
#
# Pods must not pull these images: use tags other than :latest (so the default
# imagePullPolicy is IfNotPresent) or imagePullPolicy: Never. Nothing can be
# pulled from outside; containerd's registry traffic goes to a dead proxy.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$TETHER_CLUSTER_DIR/lib.sh"
TETHER_PRODUCT_IMAGES=${TETHER_PRODUCT_IMAGES:-$TETHER_REPO_DIR/.cache/images}

if_up=0
if [ "${1:-}" = --if-up ]; then if_up=1; shift; fi
need_root
if ! daemon_pid containerd >/dev/null || ! ctr version >/dev/null 2>&1; then
  if [ $if_up = 1 ]; then log "cluster is not running; its images are imported by the next up.sh"; exit 0; fi
  die "the cluster's containerd is not running (hack/cluster/up.sh)"
fi

tars=("$@")
if [ ${#tars[@]} -eq 0 ]; then
  dir=$(images_dir)
  [ -f "$dir/.complete" ] || die "the cluster images are not built (hack/cluster/build.sh images)"
  tars=("$dir"/*.tar)
  shopt -s nullglob
  tars+=("$TETHER_PRODUCT_IMAGES"/*.tar)
fi
for t in "${tars[@]}"; do
  [ -f "$t" ] || die "$t: no such file"
  out=$(ctr -n k8s.io images import "$t") || die "import of $t failed"
  log "imported $(basename "$t"): $(sed -n 's/^unpacking \([^ ]*\) .*/\1/p' <<< "$out" | tr '\n' ' ')"
done
