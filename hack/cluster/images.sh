#!/usr/bin/env bash
# Writes the cluster's own images as docker-archive tarballs into OUTDIR:
#   pause.tar        $PAUSE_IMAGE     the pod sandbox (src/tools/pause)
#   coredns.tar      $COREDNS_IMAGE   cluster DNS (src/coredns)
#   clustertool.tar  $SMOKE_IMAGE     the smoke test's server/client/probe (src/tools/clustertool)
# All FROM scratch with one static binary, made by hack/mkimage.
# Called by build.sh (which sets MKIMAGE, TOOLS_DIR, COREDNS_DIR); a change
# to this file changes the images' cache key.
set -euo pipefail
. "$(dirname "$0")/env.sh"
out=${1:?usage: images.sh OUTDIR}
: "${MKIMAGE:?} ${TOOLS_DIR:?} ${COREDNS_DIR:?}"
mkdir -p "$out"
"$MKIMAGE" -o "$out/pause.tar" -t "$PAUSE_IMAGE" -entrypoint /pause "$TOOLS_DIR/pause:/pause"
"$MKIMAGE" -o "$out/coredns.tar" -t "$COREDNS_IMAGE" -entrypoint /coredns "$COREDNS_DIR/coredns:/coredns"
"$MKIMAGE" -o "$out/clustertool.tar" -t "$SMOKE_IMAGE" -entrypoint /clustertool "$TOOLS_DIR/clustertool:/clustertool"
