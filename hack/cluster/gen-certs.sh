#!/usr/bin/env bash
# Creates the cluster's CA, component certificates (ECDSA P-256, openssl) and
# kubeconfigs in $TETHER_CLUSTER_STATE. Existing files are kept, so that
# KUBECONFIG stays valid across down/up; down.sh --purge deletes them.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$TETHER_CLUSTER_DIR/lib.sh"

PKI=$TETHER_CLUSTER_STATE/pki
mkdir -p "$PKI"
chmod 700 "$PKI"
cd "$PKI"
umask 077

if [ ! -f ca.crt ] || [ ! -f ca.key ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key
  openssl req -x509 -new -key ca.key -subj "/CN=tether-local-cluster-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
fi

# The aggregation layer's own CA: the API server presents front-proxy-client
# (signed by it) to aggregated API servers such as tether-operator, which
# trust the user it names in X-Remote-User only from that certificate.
if [ ! -f front-proxy-ca.crt ] || [ ! -f front-proxy-ca.key ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out front-proxy-ca.key
  openssl req -x509 -new -key front-proxy-ca.key -subj "/CN=tether-local-front-proxy-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out front-proxy-ca.crt
fi

# cert NAME CN O USAGE [SAN] [CA]: USAGE is serverAuth or clientAuth; CA
# defaults to the cluster's.
cert() {
  local name=$1 cn=$2 o=$3 usage=$4 san=${5:-} ca=${6:-ca} subj
  [ -f "$name.crt" ] && [ -f "$name.key" ] && return 0
  subj="/CN=$cn"
  [ -n "$o" ] && subj="/O=$o$subj"
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } > "$name.ext"
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 3650 -sha256 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

cert apiserver kube-apiserver "" serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,IP:127.0.0.1,IP:$APISERVER_SERVICE_IP,IP:$NODE_IP"
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
cert admin tether-admin system:masters clientAuth
cert controller-manager system:kube-controller-manager "" clientAuth
cert scheduler system:kube-scheduler "" clientAuth
cert kube-proxy system:kube-proxy "" clientAuth
cert kubelet-client "system:node:$NODE_NAME" system:nodes clientAuth
cert kubelet-server "$NODE_NAME" "" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
cert front-proxy-client front-proxy-client "" clientAuth "" front-proxy-ca
if [ ! -f sa.key ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out sa.key
  openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
fi

# kubeconfig FILE CERT: a kubeconfig with embedded credentials.
kubeconfig() {
  local file=$1 c=$2
  write_if_changed "$file" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: $c
  user:
    client-certificate-data: $(base64 -w0 "$c.crt")
    client-key-data: $(base64 -w0 "$c.key")
contexts:
- name: $CLUSTER_NAME
  context: {cluster: $CLUSTER_NAME, user: $c}
current-context: $CLUSTER_NAME
EOK
}
S=$TETHER_CLUSTER_STATE
kubeconfig "$S/admin.kubeconfig" admin
kubeconfig "$S/controller-manager.kubeconfig" controller-manager
kubeconfig "$S/scheduler.kubeconfig" scheduler
kubeconfig "$S/kube-proxy.kubeconfig" kube-proxy
kubeconfig "$S/kubelet.kubeconfig" kubelet-client
