#!/usr/bin/env bash
# Stops the local cluster and undoes what up.sh changed on the machine:
# pods (torn down by the kubelet, so CNI and volumes are cleaned properly),
# the daemons (by their recorded pid), leftover containers and shims, mounts
# under /var/lib/kubelet, /run/containerd and /var/lib/containerd, the pods'
# netns (/run/netns/cni-*), iptables chains KUBE-* and CNI-* and the guard
# rule, the node IP on lo, the kubepods cgroups and the sysctls. Then checks
# that nothing is left, and fails if something is.
#
#   down.sh           keeps certificates/kubeconfigs, imported images and the
#                     build cache: the next up.sh is warm. etcd data is wiped,
#                     so every up.sh starts with an empty cluster.
#   down.sh --purge   also deletes $TETHER_CLUSTER_STATE, /var/lib/kubelet and
#                     /var/lib/containerd. The build cache always stays
#                     ($TETHER_CLUSTER_CACHE; remove it by hand if you must).
#
# Idempotent: running it on a stopped or half-started cluster is fine.
# Only processes whose pid and start time we recorded, or that provably
# belong to the cluster (containerd shims of the k8s.io namespace, processes
# in kubepods cgroups), are signalled; other netns, mounts and chains are
# never touched.
set -uo pipefail
. "$(dirname "$0")/env.sh"
. "$TETHER_CLUSTER_DIR/lib.sh"

purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  "") ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
need_root
lock_cluster
S=$TETHER_CLUSTER_STATE
T0=$SECONDS

# 1. Let the kubelet tear the pods down (CNI DEL, volume unmounts). The
#    controllers and the scheduler go first, so that nothing is recreated.
if daemon_pid kube-apiserver >/dev/null && daemon_pid kubelet >/dev/null && kc get --raw /readyz >/dev/null 2>&1; then
  stop_daemons kube-controller-manager kube-scheduler
  n=$(kc get pods -A --no-headers 2>/dev/null | wc -l)
  if [ "$n" -gt 0 ]; then
    log "deleting $n pods"
    kc delete pods --all -A --grace-period=1 --timeout=60s >/dev/null 2>&1 ||
      log "some pods did not go away in 60s; cleaning up after them"
  fi
fi

# 2. The daemons.
# (All at once: the cluster is going away, and etcd is wiped below.)
stop_daemons kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd

# 3. Containers left behind (a crashed kubelet, or pods that did not finish),
#    while containerd still runs. Removing a sandbox through ctr skips CNI;
#    its netns and mounts are handled below.
if daemon_pid containerd >/dev/null && ctr version >/dev/null 2>&1; then
  tasks=$(ctr -n k8s.io tasks ls -q 2>/dev/null)
  for t in $tasks; do ctr -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  [ -z "$tasks" ] || sleep 1
  for t in $tasks; do ctr -n k8s.io tasks rm -f "$t" >/dev/null 2>&1; done
  for c in $(ctr -n k8s.io containers ls -q 2>/dev/null); do ctr -n k8s.io containers rm "$c" >/dev/null 2>&1; done
  [ -z "$tasks" ] || log "removed $(wc -w <<< "$tasks") leftover containers"
fi
stop_daemon containerd

# 4. Processes that outlived containerd: shims of our namespace, and any
#    process still in a kubepods cgroup. Found by pid, killed by pid.
leftover_pids() {
  local d pid st
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    st=$(cat "$d/stat" 2>/dev/null) || continue
    st=${st##*) }
    [ "${st%% *}" = Z ] && continue # dead already; its parent reaps it
    if tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -q '^/usr/bin/containerd-shim-runc-v2 -namespace k8s.io '; then
      echo "$pid"
    elif grep -q ':/kubepods' "$d/cgroup" 2>/dev/null; then
      echo "$pid"
    fi
  done
}
for _ in 1 2 3; do
  left=$(leftover_pids)
  [ -z "$left" ] && break
  log "killing leftover cluster processes: $(echo "$left" | tr '\n' ' ')"
  # shellcheck disable=SC2086 # a list of pids
  kill -KILL $left 2>/dev/null
  sleep 1
done

# 5. Mounts (deepest first; some are stacked, so repeat), then the netns files.
clean_netns || true  # what is left is reported below
rm -rf "$S/cni/networks"

# 6. iptables: kube-proxy's own cleanup, then every KUBE-*/CNI-* chain (the
#    kubelet's canaries, portmap's) and the jumps to them; the guard rule.
if [ -x "$S/bin/kube-proxy" ]; then "$S/bin/kube-proxy" --cleanup >/dev/null 2>&1; fi
for ipt in iptables ip6tables; do
  command -v $ipt >/dev/null || continue
  for t in filter nat mangle raw; do
    rules=$($ipt -t $t -S 2>/dev/null) || continue
    grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' <<< "$rules" | grep -Ev '^-A (KUBE|CNI)-' | sed 's/^-A //' |
      while read -r r; do eval "$ipt -t $t -D $r"; done
    chains=$(awk '/^-N (KUBE|CNI)-/ {print $2}' <<< "$rules")
    for c in $chains; do $ipt -t $t -F "$c" 2>/dev/null; done
    for c in $chains; do $ipt -t $t -X "$c" 2>/dev/null; done
  done
done
if command -v nft >/dev/null; then # kube-proxy's nftables mode, should anyone switch to it
  for fam in ip ip6; do nft list table $fam kube-proxy >/dev/null 2>&1 && nft delete table $fam kube-proxy; done
fi
if [ -f "$S/guard-if" ]; then
  while iptables -t mangle -D FORWARD -o "$(cat "$S/guard-if")" -m comment --comment tether-cluster-guard -j DROP 2>/dev/null; do :; done
  while iptables -D OUTPUT -o "$(cat "$S/guard-if")" -d "$SERVICE_CIDR" -m comment --comment tether-cluster-guard -j REJECT 2>/dev/null; do :; done
  rm -f "$S/guard-if"
fi
# iptables-nft leaves behind the (now empty) tables it created: delete those
# that did not exist before up.sh and hold no rule.
if [ -f "$S/nft-tables.orig" ] && command -v nft >/dev/null; then
  nft list tables 2>/dev/null | while read -r _ fam name; do
    grep -qx "table $fam $name" "$S/nft-tables.orig" && continue
    case $name in filter | nat | mangle | raw | security) ;; *) continue ;; esac
    if ! nft list table "$fam" "$name" 2>/dev/null | grep -qvE '^[[:space:]]*(table .*\{|chain .*\{|type .*;|\}|)$'; then
      nft delete table "$fam" "$name"
    fi
  done
  rm -f "$S/nft-tables.orig"
fi

# 7. Node IP, the pod range's unreachable route, sysctls, cgroups.
ip addr del "$NODE_IP/32" dev lo 2>/dev/null
ip route del unreachable "$POD_CIDR" 2>/dev/null
if [ -f "$S/sysctl.orig" ]; then
  while IFS='=' read -r k v; do
    [ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || sysctl -qw "$k=$v"
  done < "$S/sysctl.orig"
  rm -f "$S/sysctl.orig"
fi
for cg in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
  [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
done

# 8. State.
rm -rf "$S/etcd" "$RUN_DIR"
if [ $purge = 1 ]; then
  rm -rf "$S" /var/lib/kubelet /var/lib/containerd /run/containerd
  log "purged $S, /var/lib/kubelet, /var/lib/containerd (build cache kept: $TETHER_CLUSTER_CACHE)"
fi

# 9. Verify.
problems=()
for d in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  daemon_pid "$d" >/dev/null && problems+=("$d still running")
done
left=$(leftover_pids)
[ -z "$left" ] || problems+=("cluster processes left: $(echo "$left" | tr '\n' ' ')")
left=$(our_mounts)
[ -z "$left" ] || problems+=("mounts left: $(echo "$left" | tr '\n' ' ')")
left=$(find /run/netns -maxdepth 1 -name 'cni-*' -printf '%f ' 2>/dev/null)
[ -z "$left" ] || problems+=("netns left: $left")
for ipt in iptables ip6tables; do
  command -v $ipt >/dev/null || continue
  for t in filter nat mangle raw; do
    n=$($ipt -t $t -S 2>/dev/null | grep -cE '(KUBE|CNI)-|tether-cluster-guard')
    [ "$n" = 0 ] || problems+=("$ipt -t $t: $n KUBE-/CNI-/guard rules left")
  done
done
ip -4 addr show dev lo | grep -q " $NODE_IP/32 " && problems+=("$NODE_IP still on lo")
ip -4 route show type unreachable | grep -q "^unreachable $POD_CIDR" && problems+=("route unreachable $POD_CIDR left")
ls -d /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods >/dev/null 2>&1 && problems+=("kubepods cgroups left")
if [ ${#problems[@]} -gt 0 ]; then
  for p in "${problems[@]}"; do log "NOT CLEAN: $p"; done
  exit 1
fi
log "cluster is down and the machine is clean ($(( SECONDS - T0 ))s)"
