#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it:
#   1. unit tests and the root/netns integration tests (TETHER_INTEGRATION=1),
#      then again under the race detector (make test runs vet and
#      staticcheck first)
#   2. the end-to-end tests on a real cluster (TETHER_E2E=1): the local one
#      from hack/cluster, brought up here (and down again afterwards if this
#      script started it), with the images from `make images`
#   3. every fuzz target briefly
# TETHER_E2E_KUBECONFIG=FILE runs the end-to-end tests against another
# cluster instead (its nodes must be able to use tether.local/* images).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
step() { printf '\n== %s\n' "$*"; }
# Every go test runs with -json through hack/testlog, which prints go
# test's own output and keeps the events: the summary at the end repeats
# each failure with its own output (CI shows only the end of a long log).
tmp=$(mktemp -d /tmp/tether-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/testlog" ./hack/testlog || exit 1
log=$tmp/events.json

step "unit and integration tests"
TETHER_INTEGRATION=1 go test -json -count=1 -timeout 30m $(go list ./... | grep -v /test/e2e) 2>&1 | "$tmp/testlog" -log "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

# The race detector needs cgo: for this run only (the shipped binaries, and
# those the integration tests build, stay static with CGO_ENABLED=0).
step "unit and integration tests, race detector"
TETHER_INTEGRATION=1 CGO_ENABLED=1 go test -json -race -count=1 -timeout 30m $(go list ./... | grep -v /test/e2e) 2>&1 | "$tmp/testlog" -log "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

started=0
if [ -z "${TETHER_E2E_KUBECONFIG:-}" ]; then
  step "local Kubernetes cluster"
  if ! ./hack/cluster/status.sh -q; then
    started=1
    ./hack/cluster/up.sh || { echo "test.sh: the local cluster did not come up" >&2; status=1; }
  fi
fi
step "images"
make --no-print-directory images || status=1
step "end-to-end tests"
TETHER_E2E=1 go test -json -count=1 -timeout 45m -v ./test/e2e 2>&1 | "$tmp/testlog" -v -log "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
if [ $started = 1 ] && [ -z "${TETHER_KEEP_CLUSTER:-}" ]; then
  step "local Kubernetes cluster down"
  ./hack/cluster/down.sh || status=1
fi

step "fuzzing"
# 20 s per target: make fuzz fuzzes longer.
./hack/fuzz.sh "${FUZZTIME:-20s}" 2>&1 | tee "$tmp/fuzz.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

if [ $status != 0 ]; then
  step "summary: what failed"
  "$tmp/testlog" -summary "$log"
  grep -E '^fuzz .*: FAILED' "$tmp/fuzz.log" || true
fi
exit $status
