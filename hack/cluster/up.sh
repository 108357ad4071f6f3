#!/usr/bin/env bash
# Brings up the local single-node Kubernetes cluster (idempotent).
#
#   up.sh            install Debian packages if missing, build (or take from the
#                    cache), start whatever is not running, wait for node Ready
#                    and CoreDNS Available. Returns at once if the cluster is
#                    already up and healthy with the current binaries.
#   up.sh --check    only tell whether the cluster is healthy (= status.sh)
#
# Then: export KUBECONFIG=/var/lib/tether-cluster/admin.kubeconfig
# (or `. hack/cluster/env.sh`). Stop it with hack/cluster/down.sh.
# See hack/cluster/README.md for what this changes on the machine.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$TETHER_CLUSTER_DIR/lib.sh"

case "${1:-}" in
  --check) exec "$TETHER_CLUSTER_DIR/status.sh" ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
need_root
lock_cluster
T0=$SECONDS
S=$TETHER_CLUSTER_STATE

"$TETHER_CLUSTER_DIR/install-deps.sh"
command -v go >/dev/null || die "go is not on PATH"
K8S_DIR=$(artifact_dir k8s)

# Up and healthy, from the same binaries, images and scripts: nothing to do.
up_signature() {
  { echo "$K8S_DIR $(artifact_key images)"
    cat "$TETHER_CLUSTER_DIR"/{env.sh,lib.sh,up.sh,gen-certs.sh,import-images.sh} "$TETHER_CLUSTER_DIR"/manifests/coredns.yaml
  } | sha256sum | cut -c1-16
}
SIG=$(up_signature)
if [ "$(cat "$RUN_DIR/up.sig" 2>/dev/null)" = "$SIG" ] && "$TETHER_CLUSTER_DIR/status.sh" -q; then
  log "cluster is already up (KUBECONFIG=$KUBECONFIG)"
  exit 0
fi
rm -f "$RUN_DIR/up.sig"

"$TETHER_CLUSTER_DIR/build.sh"
mkdir -p "$S" "$RUN_DIR" "$LOG_DIR"
chmod 700 "$S"
ln -sfn "$K8S_DIR" "$S/bin"   # for kubectl and down.sh
# The daemons run from the cache directory itself: a rebuilt binary changes
# their command line, and start_daemon restarts them.
B=$K8S_DIR

# --- preflight: nothing else may hold our ports or containerd's socket ---------
declare -A owner=([2379]=etcd [2380]=etcd [2381]=etcd [6443]=kube-apiserver
  [10257]=kube-controller-manager [10259]=kube-scheduler [10248]=kubelet [10250]=kubelet
  [10249]=kube-proxy [10256]=kube-proxy)
for port in "${!owner[@]}"; do
  if [ -n "$(ss -Hltn "sport = :$port")" ] && ! daemon_pid "${owner[$port]}" >/dev/null; then
    die "port $port is taken by another process ($(ss -Hltnp "sport = :$port" | grep -o 'users:.*' | head -1)); it is ${owner[$port]}'s"
  fi
done
if ! daemon_pid containerd >/dev/null && [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1; then
  die "another containerd serves /run/containerd/containerd.sock; stop it first"
fi

# --- host ----------------------------------------------------------------------
# A cluster that stopped without down.sh (a machine's session cut off) leaves
# its pods' netns mounted: the kubelet could not remove their sandboxes (its
# CoreDNS would stay Unknown). Nothing runs yet to use them.
if ! daemon_pid containerd >/dev/null && [ -n "$(our_mounts)" ]; then
  log "cleaning up the mounts of a cluster that was not brought down"
  clean_netns || log "some mounts are still there: $(our_mounts | tr '\n' ' ')"
fi
# Record the sysctls the kubelet, kube-proxy and we may change, once per
# up/down cycle; down.sh restores them.
SYSCTLS=(net.ipv4.ip_forward kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet net.ipv6.conf.all.forwarding)
if [ ! -f "$S/sysctl.orig" ]; then
  for k in "${SYSCTLS[@]}"; do
    v=$(sysctl -n "$k" 2>/dev/null) && echo "$k=$v"
  done > "$S/sysctl.orig.tmp"
  mv "$S/sysctl.orig.tmp" "$S/sysctl.orig"
fi
# The nftables tables that exist before iptables-nft adds its own.
if [ ! -f "$S/nft-tables.orig" ]; then
  nft list tables > "$S/nft-tables.orig.tmp" 2>/dev/null || true
  mv "$S/nft-tables.orig.tmp" "$S/nft-tables.orig"
fi
sysctl -qw net.ipv4.ip_forward=1
# The node IP is a /32 on lo (this kernel has no dummy interface).
ip -4 addr show dev lo | grep -q " $NODE_IP/32 " || ip addr add "$NODE_IP/32" dev lo
# Pod addresses without a pod (one just deleted, one not yet made) are
# unreachable: without this, the host's own packets to them (tests, the
# kubelet's probes) would follow the default route out of the machine, as
# the ptp plugin routes each pod by a /32 of its own.
ip route replace unreachable "$POD_CIDR"
# Guard: nothing routed from the pods may leave through the uplink. The pods
# have no NAT to the outside and CoreDNS no upstream either; this makes sure.
uplink=$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i+1); exit}}')
if [ -n "$uplink" ]; then
  guard=(FORWARD -o "$uplink" -m comment --comment tether-cluster-guard -j DROP)
  iptables -t mangle -C "${guard[@]}" 2>/dev/null || iptables -t mangle -I "${guard[@]}"
  # Nor the host's own packets to a Service address that kube-proxy did
  # not translate (a Service without endpoints for an instant): refused
  # here, as kube-proxy itself does, instead of leaving the machine.
  guard=(OUTPUT -o "$uplink" -d "$SERVICE_CIDR" -m comment --comment tether-cluster-guard -j REJECT)
  iptables -C "${guard[@]}" 2>/dev/null || iptables -I "${guard[@]}"
  echo "$uplink" > "$S/guard-if"
fi

# --- configuration ---------------------------------------------------------------
"$TETHER_CLUSTER_DIR/gen-certs.sh"
# Pods get no upstream name server: only CoreDNS (ClusterFirst) or nothing.
echo "# no upstream name servers: nothing leaves the machine (hack/cluster)" | write_if_changed "$S/resolv.conf"
mkdir -p "$S/cni/net.d"
write_if_changed "$S/cni/net.d/10-tether.conflist" <<EOC
{
  "cniVersion": "0.4.0",
  "name": "tether",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "dataDir": "$S/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOC
write_if_changed "$S/containerd.toml" <<EOC
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM lacks CAP_SYS_RESOURCE in the bounding set, so runc cannot set a
  # negative oom_score_adj (-998 for sandboxes): clamp to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
EOC
write_if_changed "$S/kubelet.yaml" <<EOC
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $S/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $S/pki/kubelet-server.crt
tlsPrivateKeyFile: $S/pki/kubelet-server.key
rotateCertificates: false
serverTLSBootstrap: false
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SERVICE_IP]
resolvConf: $S/resolv.conf
# Images cannot be pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
registerNode: true
EOC
write_if_changed "$S/kube-proxy.yaml" <<EOC
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $S/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts only on the node IP (lo), not on the uplink; no route_localnet.
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false}
# Leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOC

# --- containerd and images ---------------------------------------------------------
# containerd's registry client gets a proxy that does not exist: a pod whose
# image is not imported fails at once instead of pulling from the internet.
start_daemon containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
  containerd --config "$S/containerd.toml"
wait_for containerd 30 ctr version
"$TETHER_CLUSTER_DIR/import-images.sh"

# --- control plane -----------------------------------------------------------------
start_daemon etcd etcd --name "$CLUSTER_NAME" --data-dir "$S/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$CLUSTER_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd 30 curl -fsS http://127.0.0.1:2379/health
P=$S/pki
start_daemon kube-apiserver "$B/kube-apiserver" \
  --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
  --etcd-servers=http://127.0.0.1:2379 \
  --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
  --client-ca-file="$P/ca.crt" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$P/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --requestheader-client-ca-file="$P/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$P/front-proxy-client.crt" --proxy-client-key-file="$P/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --endpoint-reconciler-type=lease --profiling=false
wait_for kube-apiserver 120 kc get --raw /readyz
start_daemon kube-controller-manager "$B/kube-controller-manager" \
  --kubeconfig="$S/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$S/controller-manager.kubeconfig" --authorization-kubeconfig="$S/controller-manager.kubeconfig" \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --use-service-account-credentials=true --leader-elect=false --bind-address=127.0.0.1 --profiling=false
start_daemon kube-scheduler "$B/kube-scheduler" --kubeconfig="$S/scheduler.kubeconfig" \
  --authentication-kubeconfig="$S/scheduler.kubeconfig" --authorization-kubeconfig="$S/scheduler.kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --profiling=false

# --- node --------------------------------------------------------------------------
start_daemon kubelet "$B/kubelet" --config="$S/kubelet.yaml" --kubeconfig="$S/kubelet.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
start_daemon kube-proxy "$B/kube-proxy" --config="$S/kube-proxy.yaml"
wait_for "node $NODE_NAME Ready" 180 kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
T_NODE=$(( SECONDS - T0 ))

# --- cluster DNS -------------------------------------------------------------------
sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|g" \
  -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" "$TETHER_CLUSTER_DIR/manifests/coredns.yaml" | kc apply -f - >/dev/null
wait_for "CoreDNS Available" 180 kc -n kube-system wait --for=condition=Available deploy/coredns --timeout=1s
echo "$SIG" > "$RUN_DIR/up.sig"
log "cluster is up: node Ready after ${T_NODE}s, DNS after $(( SECONDS - T0 ))s"
log "KUBECONFIG=$KUBECONFIG  (or: . hack/cluster/env.sh)"
