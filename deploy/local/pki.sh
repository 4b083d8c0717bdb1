# shellcheck shell=bash
# Certificates and kubeconfigs of the local cluster, made with openssl. Sourced by
# cluster.sh (uses its stop, log, die and PKI, KCFG):
#
#   gen_pki    make them all unless the current set is complete; a new set stops
#              whatever still runs with the old one
#
# TLS keys are ECDSA P-256 (generated in milliseconds); the service-account
# signing key is RSA 2048.

# Bumped whenever gen_pki makes new files, so an older set is replaced at the next
# `up` (2: the real node's certificates and the bridge address in the API server's).
PKI_MARK="$PKI/.complete-2"

need_openssl() {
  command -v openssl >/dev/null 2>&1 && return 0
  log "openssl not found; installing it with apt-get"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl) >&2 ||
    die "openssl is required"
}

eckey() { openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$1"; }

# ca NAME CN: self-signed CA.
ca() {
  eckey "$PKI/$1.key"
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/$1.crt" 2>/dev/null
}

# cert NAME CN O [SAN [CA]]: key + cert signed by CA (default: the cluster CA);
# a server cert if SAN is given, else a client cert.
cert() {
  local name="$1" cn="$2" o="$3" san="${4:-}" signer="${5:-ca}" ext="$PKI/$1.ext" subj="/CN=$2"
  [[ -n "$o" ]] && subj="/O=$o/CN=$cn"
  eckey "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    if [[ -n "$san" ]]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$signer.crt" -CAkey "$PKI/$signer.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

b64() { base64 -w0 <"$1"; }

kubeconfig() { # file user-cert-name
  local f="$1" c="$2"
  (
    umask 077
    cat >"$f.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: warren-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $c
  user:
    client-certificate-data: $(b64 "$PKI/$c.crt")
    client-key-data: $(b64 "$PKI/$c.key")
contexts:
- name: warren-local
  context:
    cluster: warren-local
    user: $c
current-context: warren-local
EOF
  )
  mv "$f.tmp" "$f"
}

gen_pki() {
  if [[ -f "$PKI_MARK" ]]; then
    [[ -f "$KCFG" ]] || kubeconfig "$KCFG" admin
    return 0
  fi
  need_openssl
  # New certificates: whatever still runs with old ones has to go.
  stop kubelet
  stop kwok kube-scheduler kube-controller-manager kube-apiserver etcd coredns
  log "generating certificates in $PKI"
  rm -rf "$PKI"
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  ca ca warren-local-ca
  # Front proxy (aggregation layer) CA and client: fills the requestheader CA
  # in kube-system/extension-apiserver-authentication that the
  # controller-manager and scheduler read.
  ca front-proxy-ca warren-local-front-proxy-ca
  cert front-proxy-client front-proxy-client "" "" front-proxy-ca
  # Pods reach the API server at the `kubernetes` Service IP and at the node's bridge
  # address (forwarders to 127.0.0.1, see node.sh).
  cert apiserver kube-apiserver "" \
    "IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,IP:$NODE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin kubernetes-admin system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kwok kwok-controller system:masters
  node_certs
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  for c in controller-manager scheduler kwok kubelet coredns; do kubeconfig "$PKI/$c.kubeconfig" "$c"; done
  mkdir -p "$(dirname "$KCFG")"
  kubeconfig "$KCFG" admin
  touch "$PKI_MARK"
}

# The real node's: the kubelet's client cert (the Node authorizer knows it as
# system:node:NAME in system:nodes) and serving cert for the bridge address, which
# the API server checks against the cluster CA; the API server's client cert for
# the kubelet (RBAC: system:kubelet-api-admin, bound in node.sh); CoreDNS's client.
node_certs() {
  cert kubelet "system:node:$REAL_NODE_NAME" system:nodes
  cert kubelet-serving "system:node:$REAL_NODE_NAME" "" "IP:$NODE_IP,DNS:$REAL_NODE_NAME"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client ""
  cert coredns warren:coredns ""
}
