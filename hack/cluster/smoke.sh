#!/usr/bin/env bash
# Smoke test of the running local cluster (~20 s): deploys a small HTTP
# server (FROM scratch, src/tools/clustertool) behind a ClusterIP Service and
# checks from other pods that
#   1. the Service's DNS name resolves to its ClusterIP and answers over HTTP,
#   2. kubectl exec works,
#   3. kubectl port-forward works,
#   4. a privileged hostPID pod sees the server container's process (its PID,
#      found through /proc/*/cgroup, as tether's agent does).
# Deletes everything it created, also on failure.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$TETHER_CLUSTER_DIR/lib.sh"
need_root
"$TETHER_CLUSTER_DIR/status.sh" -q || die "the cluster is not healthy (hack/cluster/status.sh)"

NS=tether-smoke
K() { kc -n "$NS" "$@"; }
pf_pid=
failed=()
cleanup() {
  [ -z "$pf_pid" ] || kill "$pf_pid" 2>/dev/null
  kc delete namespace "$NS" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 ||
    log "could not delete namespace $NS"
}
trap cleanup EXIT
check() { # NAME CMD...
  local name=$1; shift
  if "$@"; then log "PASS $name"; else log "FAIL $name"; failed+=("$name"); fi
}

T0=$SECONDS
kc delete namespace "$NS" --ignore-not-found --wait=true --timeout=60s >/dev/null
sed -e "s|@NAMESPACE@|$NS|g" -e "s|@IMAGE@|$SMOKE_IMAGE|g" "$TETHER_CLUSTER_DIR/manifests/smoke.yaml" | kc apply -f - >/dev/null
K wait --for=condition=Available deploy/web --timeout=120s >/dev/null
K wait --for=condition=Ready pod/client pod/agent --timeout=120s >/dev/null
WEB=$(K get pod -l app=web -o jsonpath='{.items[0].metadata.name}')
SVC_IP=$(K get svc web -o jsonpath='{.spec.clusterIP}')
CID=$(K get pod "$WEB" -o jsonpath='{.status.containerStatuses[0].containerID}')
CID=${CID#containerd://}
log "workloads ready after $(( SECONDS - T0 ))s: pod $WEB, service IP $SVC_IP, container ${CID:0:12}"

dns_service() {
  local name="web.$NS.svc.$CLUSTER_DOMAIN" got
  got=$(K exec client -- /clustertool lookup "$name") || return 1
  [ "$got" = "$SVC_IP" ] || { log "$name resolved to '$got', want $SVC_IP"; return 1; }
  K exec client -- /clustertool get "http://web.$NS/via-dns" | grep -q "hello from $WEB path=/via-dns"
}
check "DNS name of a ClusterIP Service, from another pod" dns_service

exec_in_pod() { K exec "$WEB" -- /clustertool get http://127.0.0.1:8080/exec | grep -q "hello from $WEB path=/exec"; }
check "kubectl exec" exec_in_pod

port_forward() {
  local log_file port i
  log_file=$(mktemp)
  # Port 0: kubectl picks a free local port and prints it.
  K port-forward "pod/$WEB" :8080 > "$log_file" 2>&1 &
  pf_pid=$!
  for i in $(seq 50); do
    port=$(sed -n 's/^Forwarding from 127.0.0.1:\([0-9]*\) .*/\1/p' "$log_file")
    [ -n "$port" ] && break
    sleep 0.2
  done
  local ok=1
  [ -n "$port" ] && curl -fsS --max-time 10 "http://127.0.0.1:$port/port-forward" | grep -q "hello from $WEB path=/port-forward" && ok=0
  kill "$pf_pid" 2>/dev/null; wait "$pf_pid" 2>/dev/null; pf_pid=
  rm -f "$log_file"
  return $ok
}
check "kubectl port-forward" port_forward

host_pid() {
  local out pid
  out=$(K exec agent -- /clustertool findpid "$CID") || return 1
  pid=$(awk '$2 == "clustertool" {print $1; exit}' <<< "$out")
  [ -n "$pid" ] || { log "no clustertool process in container ${CID:0:12}: $out"; return 1; }
  # The pid is in the host's PID namespace: the same process, seen from here.
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q '^/clustertool serve :8080' ||
    { log "host pid $pid is not the web server: $(tr '\0' ' ' < "/proc/$pid/cmdline")"; return 1; }
  log "the agent pod sees the web container as host pid $pid"
}
check "privileged hostPID pod finds the container's PID" host_pid

if [ ${#failed[@]} -gt 0 ]; then
  log "smoke test FAILED: ${failed[*]}"
  exit 1
fi
log "smoke test passed in $(( SECONDS - T0 ))s"
