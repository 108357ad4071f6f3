#!/usr/bin/env bash
# Installs the Debian 12 packages the local cluster runs on (containerd, runc,
# CNI plugins, etcd, iptables, ...). Idempotent: installs only what is missing.
#
# A policy-rc.d keeps apt from starting the packages' own services
# (containerd, etcd) on hosts with an init system: hack/cluster/up.sh runs
# them itself, with its own configuration.
set -euo pipefail

# containerd, runc: container runtime. containernetworking-plugins: ptp,
# host-local, portmap (/usr/lib/cni). etcd-server: the apiserver's store.
# iptables, conntrack: kube-proxy (iptables mode) and the network guard.
# nftables: kube-proxy probes for nft. iproute2, util-linux: ip, nsenter,
# setsid, flock, ionice. openssl: certificates. curl: health checks.
pkgs=(containerd runc containernetworking-plugins etcd-server iptables conntrack nftables
  iproute2 util-linux openssl curl ca-certificates)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: need root to install: ${missing[*]} (run: sudo $0)" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# hack/cluster/install-deps.sh: no service starts during apt-get install\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}" >&2
apt-get update -qq >/dev/null || apt-get update
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
