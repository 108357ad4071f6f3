# shellcheck shell=bash disable=SC2034 # the variables are for the other scripts
# Settings of the local cluster, shared by the hack/cluster scripts.
#
# Source it to talk to the cluster:   . hack/cluster/env.sh && kubectl get nodes
# (it sets KUBECONFIG and puts the cluster's own kubectl, v1.33, first on PATH
# once the cluster has been built). Safe to source from an interactive shell:
# it sets variables only.

TETHER_CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TETHER_REPO_DIR=$(cd "$TETHER_CLUSTER_DIR/../.." && pwd)
# Certificates, kubeconfigs, etcd data, logs and pid files of the running cluster.
TETHER_CLUSTER_STATE=${TETHER_CLUSTER_STATE:-/var/lib/tether-cluster}
# Built binaries and images, keyed on their sources and the Go version; kept by
# down.sh (also --purge) so that the next up.sh is warm. Shared by all checkouts.
TETHER_CLUSTER_CACHE=${TETHER_CLUSTER_CACHE:-/var/cache/tether-cluster}

# The versions are those pinned in src/k8s/go.mod and src/coredns/go.mod.
KUBE_VERSION=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$TETHER_CLUSTER_DIR/src/k8s/go.mod")
COREDNS_VERSION=$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3; exit}' "$TETHER_CLUSTER_DIR/src/coredns/go.mod")
CLUSTER_NAME=tether
NODE_NAME=tether-node
# The node IP is a /32 on lo: this kernel has no dummy netdev. It is reachable
# from the pods (routed through the host) and never leaves the machine.
NODE_IP=10.250.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
APISERVER_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local

# Images the cluster itself needs; made offline by hack/cluster/images.sh.
PAUSE_IMAGE=tether.local/pause:v1
COREDNS_IMAGE=tether.local/coredns:${COREDNS_VERSION}
SMOKE_IMAGE=tether.local/clustertool:v1

export KUBECONFIG=$TETHER_CLUSTER_STATE/admin.kubeconfig
if [ -x "$TETHER_CLUSTER_STATE/bin/kubectl" ]; then
  case ":$PATH:" in *":$TETHER_CLUSTER_STATE/bin:"*) ;; *) export PATH=$TETHER_CLUSTER_STATE/bin:$PATH ;; esac
fi
