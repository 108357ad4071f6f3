#!/usr/bin/env bash
# The benchmarks, as `make bench` runs them (not part of `make test`):
#   1. the local cluster from hack/cluster, brought up if it is not (and down
#      again at the end if this script started it, unless TETHER_KEEP_CLUSTER=1)
#   2. the images (`make images`: the agent, tether.local/tether-bench:dev...)
#   3. the network-namespace benchmarks (test/bench: dataplane, incoming,
#      queues: queue splitting's forwarder on kfake and rabbitmq-server)
#   4. the Kubernetes benchmarks (test/bench/kube: startup, outgoing,
#      incoming-steal, passthrough, resources, syscalls) in namespace
#      bench-kube, deleted at the end
#   5. bench/results/SUMMARY.md from the results (test/bench/summary)
# and prints the wall time. BENCH_RUN=REGEX runs only the Kubernetes
# benchmarks matching it (go test -run), BENCH_NETNS=0 skips step 3.
# TETHER_BENCH_BEFORE=GIT-REF adds to step 3 the supervisor of that commit
# against this build's, same agent, same run (bench/results/
# supervisor-before-after.txt): "did this change slow programs down?".
# TETHER_BENCH_KUBECONFIG=FILE uses another cluster (single node: the
# benchmarks enter pods' namespaces on this machine).
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
status=0
step() { printf '\n== %s (at %ds)\n' "$*" $(( $(date +%s) - t0 )); }

started=0
if [ -z "${TETHER_BENCH_KUBECONFIG:-}" ]; then
  step "local Kubernetes cluster"
  if ! ./hack/cluster/status.sh -q; then
    started=1
    ./hack/cluster/up.sh || { echo "bench.sh: the local cluster did not come up" >&2; exit 1; }
  fi
fi
# kubectl of the cluster first on PATH, KUBECONFIG.
. hack/cluster/env.sh
[ -n "${TETHER_BENCH_KUBECONFIG:-}" ] && export KUBECONFIG=$TETHER_BENCH_KUBECONFIG

step "images"
make --no-print-directory images || exit 1

if [ "${BENCH_NETNS:-1}" != 0 ]; then
  step "network-namespace benchmarks (test/bench)"
  TETHER_INTEGRATION=1 TETHER_BENCH=1 go test -count=1 -v -timeout 15m ./test/bench 2>&1 | grep -v -e '^=== RUN'
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

step "Kubernetes benchmarks (test/bench/kube)"
TETHER_BENCH=1 go test -count=1 -v -timeout 25m -run "${BENCH_RUN:-.}" ./test/bench/kube 2>&1 | grep -v -e '^=== RUN'
[ "${PIPESTATUS[0]}" = 0 ] || status=1
# Normally gone already (the benchmarks delete it); not after an interrupt.
kubectl delete namespace bench-kube --ignore-not-found --wait=false >/dev/null 2>&1

step "summary (bench/results/SUMMARY.md)"
go run ./test/bench/summary || status=1

if [ $started = 1 ] && [ -z "${TETHER_KEEP_CLUSTER:-}" ]; then
  step "local Kubernetes cluster down"
  ./hack/cluster/down.sh || status=1
fi
elapsed=$(( $(date +%s) - t0 ))
printf '\nbench.sh: wall time %dm%02ds (status %d)\n' $((elapsed / 60)) $((elapsed % 60)) $status
exit $status
