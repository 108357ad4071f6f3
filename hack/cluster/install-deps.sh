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

exec "$(dirname "$0")/../apt-install.sh" "${pkgs[@]}"
