#!/usr/bin/env bash
# `make demo`: the talk's demo, end to end.
#   1. a Kubernetes cluster: the current kube context if it answers (its
#      nodes must be able to use the tether.local/* images: `make images`
#      imports them into the local cluster only), else the local one from
#      hack/cluster (brought up here, and down at the end unless DEMO_KEEP=1)
#   2. the demo app (examples/ip-visit-counter) deployed in tether-demo
#   3. your local copy of ip-visit-counter, with a new greeting, run under
#      `tether exec` stealing only requests with "x-tether-user: me"
#   4. requests without and with the header, side by side
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

started=0
if [ -n "${TETHER_DEMO_KUBECONFIG:-}" ]; then
  export KUBECONFIG=$TETHER_DEMO_KUBECONFIG
elif command -v kubectl >/dev/null && kubectl version --request-timeout=3s >/dev/null 2>&1 && [ "$(kubectl config current-context 2>/dev/null)" != "" ]; then
  say "Using the current kube context: $(kubectl config current-context)"
else
  if ! ./hack/cluster/status.sh -q; then
    say "Bringing up the local Kubernetes cluster (hack/cluster: minutes the first time, seconds after)"
    ./hack/cluster/up.sh
    started=1
  fi
  . ./hack/cluster/env.sh
fi
cleanup() {
  [ -n "${tether_pid:-}" ] && kill -INT "$tether_pid" 2>/dev/null && wait "$tether_pid" 2>/dev/null
  if [ $started = 1 ] && [ -z "${DEMO_KEEP:-}" ]; then
    say "Taking the local cluster down (DEMO_KEEP=1 keeps it)"
    ./hack/cluster/down.sh >/dev/null
  fi
}
trap cleanup EXIT

say "Building and importing the images (agent and demo app)"
make --no-print-directory images >/dev/null

say "Deploying the demo app: ip-visit-counter, Redis, ip-info, Kafka, consumer (namespace tether-demo)"
kubectl apply -f examples/ip-visit-counter/deploy/demo.yaml >/dev/null 2>&1 || kubectl apply -f examples/ip-visit-counter/deploy/demo.yaml
kubectl -n tether-demo rollout status deployment --timeout=180s >/dev/null
ip=$(kubectl -n tether-demo get svc ip-visit-counter -o jsonpath='{.spec.clusterIP}')
url="http://$ip"
for _ in $(seq 50); do curl -fsS -m 2 "$url/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
say "The deployed service answers (the text comes from /app/response.txt in the pod, the count from Redis):"
curl -sS "$url/"

say "Your local copy runs under tether: the pod's env, files, DNS and network; requests with x-tether-user: me are yours"
go build -o bin/ip-visit-counter ./examples/ip-visit-counter/cmd/ip-visit-counter
log=$(mktemp)
(cd examples/ip-visit-counter && exec "$root/bin/tether" exec --progress plain -- "$root/bin/ip-visit-counter" --greeting="hi from your laptop") >"$log" 2>&1 &
tether_pid=$!
for _ in $(seq 300); do
  grep -q "is stolen" "$log" && break
  if ! kill -0 "$tether_pid" 2>/dev/null; then cat "$log"; echo "demo: tether exited" >&2; exit 1; fi
  sleep 0.2
done
sed 's/^/    /' "$log"

say "A request without the header: answered by the cluster, as for everyone else"
curl -sS "$url/"
say "A request with x-tether-user: me: answered by your local code (same pod file, same Redis counter)"
curl -sS -H 'x-tether-user: me' "$url/"
say "And the cluster again"
curl -sS "$url/"

kill -INT "$tether_pid"; wait "$tether_pid" 2>/dev/null || true; tether_pid=
say "tether stopped: the agent goes away after its linger time; the cluster is untouched."
