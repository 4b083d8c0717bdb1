#!/usr/bin/env bash
# Local Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods
# become Running without a container runtime).
#
# usage: cluster.sh up       build missing tools, start what is not running, wait until Ready
#        cluster.sh down     stop the processes started by `up`, delete the cluster state
#        cluster.sh status   up/down, versions, nodes
#
# State: .local/cluster/ (certs, etcd data, logs, pid files) and the admin
# kubeconfig .local/kubeconfig.  Binaries: see tools.sh / versions.env.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
LOG_TAG=cluster
# shellcheck source=lib.sh
. "$HERE/lib.sh"

STATE="$WARREN_STATE"
PKI="$STATE/pki"
LOGS="$STATE/logs"
RUN="$STATE/run"
KCFG="$WARREN_KUBECONFIG"
KUBECTL="$WARREN_K8S_BIN/kubectl"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
START_TIMEOUT="${WARREN_START_TIMEOUT:-120}"

k() { "$KUBECTL" --kubeconfig="$KCFG" "$@"; }

bin_of() {
  case "$1" in
    etcd) echo "$WARREN_ETCD_BIN/etcd" ;;
    kwok) echo "$WARREN_KWOK_BIN/kwok" ;;
    *) echo "$WARREN_K8S_BIN/$1" ;;
  esac
}

# pid of a component we started, if it is still alive; stale pid files (dead
# process, or pid reused by an unrelated program) are removed.
pid_of() {
  local f="$RUN/$1.pid" pid exe
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && exe="$(readlink "/proc/$pid/exe" 2>/dev/null)"; then
    exe="${exe% (deleted)}"
    # Our binaries live in the cache as <cache>/bin/<component>-<version>/<name>.
    if [[ "$(basename "$exe")" == "$1" && "$exe" == "$WARREN_CACHE/bin/"* ]]; then
      echo "$pid"
      return 0
    fi
  fi
  rm -f "$f"
  return 1
}

alive() { pid_of "$1" >/dev/null; }

# start NAME ARGS...: runs the component detached (own session, stdin closed),
# logging to $LOGS/NAME.log; the pid file holds the component's own pid.
start() {
  local name="$1"; shift
  local bin; bin="$(bin_of "$name")"
  [[ -x "$bin" ]] || die "$bin is missing (run deploy/local/tools.sh)"
  mkdir -p "$LOGS" "$RUN"
  log "starting $name"
  # The subshell writes its own pid, then becomes the component in a session of its
  # own: setsid(1) forks only when its caller leads a process group, and a background
  # subshell of this script (no job control) does not, so the pid stays.
  (
    echo "$BASHPID" >"$RUN/$name.pid"
    exec setsid "$bin" "$@"
  ) </dev/null >>"$LOGS/$name.log" 2>&1 8>&- &
  local i pid
  for i in $(seq 1 50); do
    # Until the subshell has exec'd the binary the pid's exe is bash (then setsid), which pid_of
    # would take for a stale file; wait for the exec, or for the process to die.
    pid="$(cat "$RUN/$name.pid" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ && -e "/proc/$pid" ]]; then
      [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$(readlink -f "$bin")" ]] && return 0
    elif [[ -n "$pid" ]]; then
      break
    fi
    sleep 0.1
  done
  tail -n 20 "$LOGS/$name.log" >&2 || true
  die "$name exited at once (log: $LOGS/$name.log)"
}

# stop NAME...: SIGTERM to all of them at once, wait up to 10s, then SIGKILL.
stop() {
  local name pid i pids=()
  for name in "$@"; do
    pid="$(pid_of "$name")" || continue
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not exit after 10s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  for name in "$@"; do rm -f "$RUN/$name.pid"; done
}

port_busy() { # port: true if something listens on 127.0.0.1:port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_port() { # name port
  if ! alive "$1" && port_busy "$2"; then
    die "127.0.0.1:$2 (for $1) is already in use by another process; stop it or override the port (see deploy/local/versions.env)"
  fi
}

# ---------------------------------------------------------------- certs ----

need_openssl() {
  command -v openssl >/dev/null 2>&1 && return 0
  log "openssl not found; installing it with apt-get"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl) >&2 ||
    die "openssl is required"
}

# TLS keys are ECDSA P-256 (generated in milliseconds); the service-account
# signing key is RSA 2048.
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
  if [[ -f "$PKI/.complete" ]]; then
    [[ -f "$KCFG" ]] || kubeconfig "$KCFG" admin
    return 0
  fi
  need_openssl
  # New certificates: whatever still runs with old ones has to go.
  stop kwok kube-scheduler kube-controller-manager kube-apiserver etcd
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
  cert apiserver kube-apiserver "" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin kubernetes-admin system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kwok kwok-controller system:masters
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  for c in controller-manager scheduler kwok; do kubeconfig "$PKI/$c.kubeconfig" "$c"; done
  mkdir -p "$(dirname "$KCFG")"
  kubeconfig "$KCFG" admin
  touch "$PKI/.complete"
}

# ----------------------------------------------------------- components ----

start_etcd() {
  alive etcd && return 0
  check_port etcd "$ETCD_CLIENT_PORT"
  check_port etcd "$ETCD_PEER_PORT"
  mkdir -p "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  # Plain HTTP, loopback only. --unsafe-no-fsync: throw-away dev data, much faster.
  start etcd --name=warren-local --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="warren-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level=warn
  wait_for "etcd health" 30 curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health" ||
    { tail -n 20 "$LOGS/etcd.log" >&2; die "etcd did not become healthy"; }
}

start_apiserver() {
  alive kube-apiserver && return 0
  check_port kube-apiserver "$APISERVER_PORT"
  # --endpoint-reconciler-type=none: the "kubernetes" Endpoints may not hold a
  # loopback address, and nothing in this cluster needs it.
  start kube-apiserver \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CLUSTER_IP_RANGE" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --endpoint-reconciler-type=none --profiling=false --v=1
}

start_controller_manager() {
  alive kube-controller-manager && return 0
  check_port kube-controller-manager "$CONTROLLER_MANAGER_PORT"
  local kc="$PKI/controller-manager.kubeconfig"
  # --controllers='*': every default controller (deployment, replicaset,
  # namespace, garbagecollector, serviceaccount(-token), node lifecycle, ...).
  start kube-controller-manager \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT" --cert-dir="$STATE/controller-manager" \
    --controllers='*' --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --flex-volume-plugin-dir="$STATE/controller-manager/flexvolume" \
    --profiling=false --v=1
}

start_scheduler() {
  alive kube-scheduler && return 0
  check_port kube-scheduler "$SCHEDULER_PORT"
  local kc="$PKI/scheduler.kubeconfig"
  start kube-scheduler \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false --profiling=false --v=1
}

start_kwok() {
  alive kwok && return 0
  # Node and pod Stages (kwok's "fast" ones, heartbeats via leases) are
  # extracted by tools.sh from the kwok module at the pinned version.
  # KWOK_WORKDIR keeps kwok from reading ~/.kwok/kwok.yaml.
  mkdir -p "$STATE/kwok"
  KWOK_WORKDIR="$STATE/kwok" start kwok \
    --config="$WARREN_KWOK_BIN/stages.yaml" --kubeconfig="$PKI/kwok.kubeconfig" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --manage-nodes-with-label-selector= \
    --cidr="$KWOK_POD_CIDR" --node-ip="$KWOK_NODE_IP" --node-lease-duration-seconds=40
}

create_nodes() {
  local i
  for i in $(seq 0 $((FAKE_NODE_COUNT - 1))); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable:
    cpu: "$FAKE_NODE_CPU"
    memory: $FAKE_NODE_MEMORY
    pods: "$FAKE_NODE_PODS"
  capacity:
    cpu: "$FAKE_NODE_CPU"
    memory: $FAKE_NODE_MEMORY
    pods: "$FAKE_NODE_PODS"
EOF
  done | k apply -f - >/dev/null
}

nodes_ready() {
  local n
  n="$(k get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')"
  [[ "$n" -ge "$FAKE_NODE_COUNT" ]]
}

apiserver_ready() { k get --raw='/readyz' 2>/dev/null | grep -qx ok; }

all_alive() {
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
}

# ------------------------------------------------------------- commands ----

cmd_up() {
  local t0=$SECONDS
  if [[ -x "$KUBECTL" ]] && all_alive && apiserver_ready; then
    log "cluster is already up (kubernetes $KUBERNETES_VERSION, kubeconfig $KCFG)"
    echo "export KUBECONFIG=$KCFG"
    return 0
  fi
  bash "$HERE/tools.sh" build
  mkdir -p "$STATE" "$LOGS" "$RUN"
  gen_pki
  start_etcd
  start_apiserver
  wait_for "kube-apiserver /readyz" "$START_TIMEOUT" apiserver_ready ||
    { tail -n 30 "$LOGS/kube-apiserver.log" >&2; die "kube-apiserver did not become ready (log: $LOGS/kube-apiserver.log)"; }
  start_controller_manager
  start_scheduler
  start_kwok
  create_nodes
  wait_for "$FAKE_NODE_COUNT fake nodes Ready" "$START_TIMEOUT" nodes_ready ||
    { tail -n 30 "$LOGS/kwok.log" >&2; die "fake nodes did not become Ready (log: $LOGS/kwok.log)"; }
  # Pods need the "default" ServiceAccount, created by the controller-manager.
  wait_for "default ServiceAccount" "$START_TIMEOUT" k -n default get serviceaccount default ||
    { tail -n 30 "$LOGS/kube-controller-manager.log" >&2; die "controller-manager did not create the default ServiceAccount"; }
  all_alive || die "a component exited during start-up; see $LOGS"
  log "cluster is up in $((SECONDS - t0))s: kubernetes $KUBERNETES_VERSION, $FAKE_NODE_COUNT kwok nodes Ready"
  log "kubectl: $KUBECTL (or: . deploy/local/env.sh)   logs: $LOGS"
  echo "export KUBECONFIG=$KCFG"
}

cmd_down() {
  local c any=0
  for c in "${COMPONENTS[@]}"; do alive "$c" && any=1; done
  stop kwok kube-scheduler kube-controller-manager kube-apiserver etcd
  if [[ -d "$STATE" || -f "$KCFG" ]]; then
    rm -rf "$STATE" "$KCFG"
    log "cluster stopped; state removed ($STATE, $KCFG)"
  elif [[ $any -eq 0 ]]; then
    log "cluster is not up; nothing to do"
  fi
}

cmd_status() {
  local c pid running=0
  for c in "${COMPONENTS[@]}"; do
    if pid="$(pid_of "$c")"; then
      printf '  %-24s running (pid %s)\n' "$c" "$pid"
      running=$((running + 1))
    else
      printf '  %-24s stopped\n' "$c"
    fi
  done
  echo "pinned: kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION"
  if [[ $running -eq ${#COMPONENTS[@]} ]] && apiserver_ready; then
    echo "cluster: up (https://127.0.0.1:$APISERVER_PORT, KUBECONFIG=$KCFG)"
    k version 2>/dev/null | sed 's/^/  /' || true
    k get nodes -o wide 2>/dev/null | sed 's/^/  /' || true
  elif [[ $running -gt 0 ]]; then
    echo "cluster: degraded ($running of ${#COMPONENTS[@]} components running, logs in $LOGS); 'cluster.sh up' restarts the stopped ones"
  else
    echo "cluster: down"
  fi
}

# One `up`/`down` at a time (fd 8 is closed for the started components).
lock() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$WARREN_ROOT/.local"
  exec 8>"$WARREN_ROOT/.local/cluster.lock"
  flock 8
}

case "${1:-}" in
  up) lock; cmd_up ;;
  down) lock; cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
