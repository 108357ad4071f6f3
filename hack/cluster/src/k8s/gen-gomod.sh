#!/usr/bin/env bash
# Regenerates go.mod/go.sum of the multi-call Kubernetes binary for KVER.
#
# k8s.io/kubernetes is not meant to be used as a module: its go.mod points every
# staging module (k8s.io/api, k8s.io/kubelet, ...) at ./staging. We require
# k8s.io/kubernetes and replace each staging module with its published v0.X.Y
# tag. Run this only when bumping the version; the result is committed.
#
# The module proxy here is a filtered mirror: check that every replaced module
# exists for the new version (`go mod tidy` fails with "403 ... not available"
# if not; 1.31 and 1.32 have such gaps, 1.33.13 does not).
set -euo pipefail
KVER=${KVER:-v1.33.13}
SVER=v0.${KVER#v1.}
cd "$(dirname "$0")"
# Only modules k8s.io/kubernetes itself needs are replaced; the two samples
# are not published for every version and nothing imports them.
skip='^k8s.io/(sample-cli-plugin|sample-controller)$'
# (outside any module, so no go.mod or go.sum is touched by the download)
upstream_mod=$(cd / && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${KVER}" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
[ -f "$upstream_mod" ] || { echo "gen-gomod: cannot find go.mod of k8s.io/kubernetes@${KVER}" >&2; exit 1; }
{
  printf 'module tether.local/hack/cluster/k8s\n\n'
  # The language version and GODEBUG defaults k8s.io/kubernetes is built with.
  sed -n 's/^go \(.*\)$/go \1/p' "$upstream_mod"
  printf '\ngodebug default=go%s\n\n' "$(sed -n 's/^go \([0-9]*\.[0-9]*\).*$/\1/p' "$upstream_mod")"
  printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$KVER"
  awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$upstream_mod" | grep -Ev "$skip" | sort | while read -r m; do
    printf '\t%s => %s %s\n' "$m" "$m" "$SVER"
  done
  printf ')\n'
} > go.mod
rm -f go.sum
GOFLAGS=-mod=mod go mod tidy
echo "gen-gomod: go.mod and go.sum for k8s.io/kubernetes ${KVER}"
