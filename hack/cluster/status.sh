#!/usr/bin/env bash
# Tells whether the local cluster is up and healthy: every daemon running,
# the apiserver ready, the node Ready and CoreDNS Available.
#   status.sh [-q]   exit 0 if healthy, 1 if not; -q prints nothing.
set -uo pipefail
. "$(dirname "$0")/env.sh"
. "$TETHER_CLUSTER_DIR/lib.sh"
quiet=0
[ "${1:-}" = -q ] && quiet=1
say() { [ $quiet = 1 ] || echo "$@"; }
ok=1
for d in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  if pid=$(daemon_pid "$d"); then say "ok    $d (pid $pid)"; else say "DOWN  $d"; ok=0; fi
done
if [ $ok = 1 ]; then
  if kc get --raw /readyz >/dev/null 2>&1; then say "ok    apiserver ready"; else say "FAIL  apiserver not ready"; ok=0; fi
fi
if [ $ok = 1 ]; then
  if kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s >/dev/null 2>&1; then
    say "ok    node $NODE_NAME Ready"
  else say "FAIL  node $NODE_NAME not Ready"; ok=0; fi
  if kc -n kube-system wait --for=condition=Available deploy/coredns --timeout=1s >/dev/null 2>&1; then
    say "ok    CoreDNS Available"
  else say "FAIL  CoreDNS not Available"; ok=0; fi
fi
if [ $ok = 1 ]; then say "cluster is healthy (KUBECONFIG=$KUBECONFIG)"; exit 0; fi
say "cluster is not healthy (hack/cluster/up.sh starts it; logs in $LOG_DIR)"
exit 1
