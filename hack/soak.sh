#!/usr/bin/env bash
# The churn soak, as `make soak` runs it (not part of `make test`, which runs
# the same test for 3 minutes): test/e2e TestChurnSoak for
# TETHER_SOAK_DURATION (default 30m) on the local cluster from hack/cluster,
# brought up if it is not (and down again at the end if this script started
# it, unless TETHER_KEEP_CLUSTER=1), with the images from `make images`.
# TETHER_E2E_KUBECONFIG=FILE uses another cluster instead (single node: the
# test reads the agent's memory on this machine). TETHER_SOAK_TIMEOUT is go
# test's -timeout (default 45m; the test refuses to start with less than
# the duration plus 5 minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
step() { printf '\n== %s\n' "$*"; }

started=0
if [ -z "${TETHER_E2E_KUBECONFIG:-}" ]; then
  step "local Kubernetes cluster"
  if ! ./hack/cluster/status.sh -q; then
    started=1
    ./hack/cluster/up.sh || { echo "soak.sh: the local cluster did not come up" >&2; exit 1; }
  fi
fi
step "images"
if make --no-print-directory images; then
  step "churn soak (TETHER_SOAK_DURATION=${TETHER_SOAK_DURATION:-30m})"
  TETHER_E2E=1 TETHER_SOAK_DURATION=${TETHER_SOAK_DURATION:-30m} \
    go test -count=1 -timeout "${TETHER_SOAK_TIMEOUT:-45m}" -v -run '^TestChurnSoak$' ./test/e2e 2>&1 | sed -u 's/^/  /'
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
else
  status=1
fi
if [ $started = 1 ] && [ -z "${TETHER_KEEP_CLUSTER:-}" ]; then
  step "local Kubernetes cluster down"
  ./hack/cluster/down.sh || status=1
fi
exit $status
