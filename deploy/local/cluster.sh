#!/usr/bin/env bash
# Local Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods
# become Running without a container runtime), and a real node beside them
# (node.sh: kubelet, containerd, runc, CoreDNS, on a bridge of its own).
#
# usage: cluster.sh up       build missing tools, start what is not running, wait until Ready
#        cluster.sh down     stop the processes started by `up`, delete the cluster state
#        cluster.sh status   up/down, versions, nodes
#        cluster.sh stop etcd|kube-apiserver    stop one component (fault tests)
#        cluster.sh start etcd|kube-apiserver   start it again, wait until it serves
#
# State: .local/cluster/ (certs, etcd data, the node's dirs, logs, pid files) and
# the admin kubeconfig .local/kubeconfig.  Binaries: see tools.sh / versions.env.
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

# shellcheck source=pki.sh
. "$HERE/pki.sh"
# shellcheck source=node.sh
. "$HERE/node.sh"

bin_of() {
  case "$1" in
    etcd) echo "$WARREN_ETCD_BIN/etcd" ;;
    kwok) echo "$WARREN_KWOK_BIN/kwok" ;;
    coredns) echo "$WARREN_CACHE/bin/coredns-$COREDNS_VERSION/coredns" ;;
    containerd) command -v containerd ;;
    fwd-*) command -v socat ;;
    *) echo "$WARREN_K8S_BIN/$1" ;;
  esac
}

# pid of a component we started, if it is still alive. A pid file whose process is
# gone is removed; one whose pid now runs another program is ignored but kept (it may
# be ours from another WARREN_CACHE: a `status` must not orphan it).
pid_of() {
  local f="$RUN/$1.pid" pid exe
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && exe="$(readlink "/proc/$pid/exe" 2>/dev/null)"; then
    exe="${exe% (deleted)}"
    # Our builds live in the cache as <cache>/bin/<component>-<version>/<name> (any
    # version: one started before a pin was bumped is still ours); Debian's binaries
    # (containerd, socat) are matched by path.
    if [[ "$(basename "$exe")" == "$1" && "$exe" == "$WARREN_CACHE/bin/"* ]] ||
      [[ "$exe" == "$(readlink -f "$(bin_of "$1")")" ]]; then
      echo "$pid"
      return 0
    fi
    return 1
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

# stop NAME...: SIGTERM to all of them at once, wait up to 10s, then SIGKILL. Only
# the pid files of what it stopped go (pid_of drops those of dead processes).
stop() {
  local name pid i pids=() names=()
  for name in "$@"; do
    pid="$(pid_of "$name")" || continue
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
    names+=("$name")
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
  for name in "${names[@]}"; do rm -f "$RUN/$name.pid"; done
}

port_busy() { # port: true if something listens on 127.0.0.1:port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_port() { # name port
  if ! alive "$1" && port_busy "$2"; then
    die "127.0.0.1:$2 (for $1) is already in use by another process; stop it or override the port (see deploy/local/versions.env)"
  fi
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
  # Served on loopback; advertised (the `kubernetes` Endpoints) at the node's bridge
  # address, where a forwarder leads to it (node.sh). The kubelet is called at its
  # InternalIP only (the bridge address), never at a hostname that could resolve to
  # the machine's external address, and its serving cert is checked.
  start kube-apiserver \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address=127.0.0.1 --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT" \
    --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CLUSTER_IP_RANGE" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --profiling=false --v=1
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
  if [[ -x "$KUBECTL" ]] && all_alive && node_alive && apiserver_ready; then
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
  node_up
  if ! all_alive || ! node_alive; then die "a component exited during start-up; see $LOGS"; fi
  log "cluster is up in $((SECONDS - t0))s: kubernetes $KUBERNETES_VERSION, $FAKE_NODE_COUNT kwok nodes$(node_enabled && echo " and $REAL_NODE_NAME") Ready"
  log "kubectl: $KUBECTL (or: . deploy/local/env.sh)   logs: $LOGS"
  echo "export KUBECONFIG=$KCFG"
}

# Pid files whose process runs but is not taken for ours (started from another
# WARREN_CACHE?): stopping the rest and deleting the state would orphan them.
unrecognised_pids() {
  local f name
  for f in "$RUN"/*.pid; do
    [[ -f "$f" ]] || continue
    name="$(basename "$f" .pid)"
    pid_of "$name" >/dev/null || [[ ! -f "$f" ]] || printf ' %s=%s' "$name" "$(cat "$f")"
  done
  return 0
}

cmd_down() {
  local c any=0 left
  left="$(unrecognised_pids)"
  [[ -z "$left" ]] || die "running, but not from $WARREN_CACHE:$left; nothing stopped (run down with their WARREN_CACHE)"
  for c in "${COMPONENTS[@]}" "${NODE_COMPONENTS[@]}"; do alive "$c" && any=1; done
  # In batches whose exits overlap: what talks to the API server (the node's kubelet
  # and CoreDNS with the controllers), then containerd, once it has killed the
  # containers, with the API server; etcd last: the API server removes itself from
  # the `kubernetes` Endpoints as it exits.
  node_stop kwok kube-scheduler kube-controller-manager
  stop containerd kube-apiserver
  stop etcd
  node_cleanup
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
  node_status
  echo "pinned: kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION, coredns $COREDNS_VERSION"
  if [[ $running -eq ${#COMPONENTS[@]} ]] && node_alive && apiserver_ready; then
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
# Fault tests take etcd or the API server away and bring it back; the rest of the
# cluster keeps running and must ride it out.
cmd_stop_component() {
  case "${1:-}" in
    etcd | kube-apiserver) stop "$1" ;;
    *) die "stop: etcd or kube-apiserver, not '${1:-}'" ;;
  esac
}

cmd_start_component() {
  case "${1:-}" in
    etcd) start_etcd ;;
    kube-apiserver) start_apiserver ;;
    *) die "start: etcd or kube-apiserver, not '${1:-}'" ;;
  esac
  wait_for "kube-apiserver /readyz" "$START_TIMEOUT" apiserver_ready ||
    { tail -n 30 "$LOGS/kube-apiserver.log" >&2; die "kube-apiserver did not become ready (log: $LOGS/kube-apiserver.log)"; }
}

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
  stop) lock; cmd_stop_component "${2:-}" ;;
  start) lock; cmd_start_component "${2:-}" ;;
  *) echo "usage: $0 up|down|status|stop COMPONENT|start COMPONENT" >&2; exit 2 ;;
esac
