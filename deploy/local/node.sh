# shellcheck shell=bash
# The real node of the local cluster: a kubelet (built from the pinned Kubernetes
# module) on Debian's containerd and runc, beside kwok's fake nodes. Sourced by
# cluster.sh, whose start/stop/pid_of/k and STATE/PKI/LOGS/RUN it uses:
#
#   node_up        install what is missing, start what is not running, wait for Ready
#   node_stop, node_cleanup
#                  the two halves of `down` (see there): stop the node's processes and
#                  containers; undo its mounts, cgroups, bridge and routes
#   node_status    one line per node process
#
# Network (docs/local-cluster.md, "The real node"): the scripts own a bridge,
# NODE_BRIDGE, holding NODE_IP (the node's address, where the kubelet serves) and
# KUBERNETES_SERVICE_IP. Pods get addresses on it from the CNI bridge plugin, with
# no gateway role for the host, no masquerade and no default route: they can reach
# the bridge's addresses and nothing else. Forwarders on those addresses lead to the
# loopback-only API server and RabbitMQ, and a CoreDNS bound to NODE_IP answers
# cluster.local names and nothing else.

NODE_DIR="$STATE/node"
CONTAINERD_DIR="$NODE_DIR/containerd"
CONTAINERD_SOCK="$CONTAINERD_DIR/containerd.sock"
KUBELET_DIR="$NODE_DIR/kubelet"
CNI_DIR="$NODE_DIR/cni"
CNI_BIN_DIR=/usr/lib/cni
NODE_TEMPLATES="$HERE/node"
# The kubelet's cgroups (cgroupfs driver) live under this name in every hierarchy.
CGROUP_ROOT=warren-node
CTR=(ctr --address "$CONTAINERD_SOCK" --namespace k8s.io)

# Forwarders from the bridge to loopback-only services: name, bind address, port, loopback port.
FORWARDS=(
  "fwd-kubernetes $KUBERNETES_SERVICE_IP 443 $APISERVER_PORT"
  "fwd-apiserver $NODE_IP $APISERVER_PORT $APISERVER_PORT"
  "fwd-amqp $NODE_IP $WARREN_AMQP_PORT $WARREN_AMQP_PORT"
  "fwd-management $NODE_IP $WARREN_MANAGEMENT_PORT $WARREN_MANAGEMENT_PORT"
)
NODE_COMPONENTS=(coredns containerd kubelet fwd-kubernetes fwd-apiserver fwd-amqp fwd-management)

# Debian packages the node needs, as "file-or-command:package".
NODE_PACKAGES=(containerd:containerd runc:runc "$CNI_BIN_DIR/bridge:containernetworking-plugins"
  socat:socat ip:iproute2 findmnt:util-linux)

node_enabled() { [[ "$WARREN_REAL_NODE" == 1 ]]; }

# ------------------------------------------------------------- packages ----

have() { if [[ "$1" == /* ]]; then [[ -x "$1" ]]; else command -v "$1" >/dev/null 2>&1; fi; }

need_node_packages() {
  local pair missing=()
  for pair in "${NODE_PACKAGES[@]}"; do
    have "${pair%%:*}" || missing+=("${pair#*:}")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian's ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >&2 ||
    die "could not install ${missing[*]}"
}

# ---------------------------------------------------------------- config ----

# render TEMPLATE OUT: the template with every @NAME@ replaced by $NAME.
render() {
  local name script=()
  while read -r name; do
    [[ -n "${!name:-}" ]] || die "$1 uses @$name@, which is not set"
    script+=(-e "s|@$name@|${!name}|g")
  done < <(grep -o '@[A-Z_]*@' "$1" | tr -d @ | sort -u)
  sed "${script[@]}" "$1" >"$2.tmp"
  mv "$2.tmp" "$2"
}

# shellcheck disable=SC2034 # RUNC, PAUSE_IMAGE: render reads them by name
write_node_config() {
  mkdir -p "$CONTAINERD_DIR" "$KUBELET_DIR" "$CNI_DIR/net.d"
  # A unix socket path must fit in 108 bytes.
  ((${#CONTAINERD_SOCK} < 100)) || die "containerd's socket path is too long: $CONTAINERD_SOCK (move the checkout)"
  local RUNC PAUSE_IMAGE
  RUNC="$(command -v runc)"
  PAUSE_IMAGE="$(bash "$HERE/images.sh" ref pause)"
  render "$NODE_TEMPLATES/containerd.toml" "$CONTAINERD_DIR/config.toml"
  render "$NODE_TEMPLATES/kubelet.yaml" "$KUBELET_DIR/config.yaml"
  render "$NODE_TEMPLATES/cni.conflist" "$CNI_DIR/net.d/10-warren.conflist"
  render "$NODE_TEMPLATES/Corefile" "$NODE_DIR/Corefile"
}

# -------------------------------------------------------------- network ----

# Routes other than ours that overlap the bridge's subnet or the Service range.
foreign_routes() {
  local net
  for net in "$NODE_BRIDGE_CIDR" "$SERVICE_CLUSTER_IP_RANGE"; do
    ip -4 route show match "$net"
    ip -4 route show root "$net"
  done | grep -v -e '^default ' -e '^blackhole ' -e " dev $NODE_BRIDGE\\b" || true
}

# The bridge and its two addresses. Forwarding is off for packets that arrive on it,
# so a pod's packet can only be delivered to the host's own bridge addresses.
node_network() {
  local routes v6
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    routes="$(foreign_routes)"
    [[ -z "$routes" ]] || die "$NODE_BRIDGE_CIDR or $SERVICE_CLUSTER_IP_RANGE is already routed on this machine: $routes"
    log "creating bridge $NODE_BRIDGE ($NODE_IP, $KUBERNETES_SERVICE_IP)"
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip -4 addr show dev "$NODE_BRIDGE" | grep " $NODE_IP/" >/dev/null ||
    ip addr add "$NODE_IP/${NODE_BRIDGE_CIDR#*/}" dev "$NODE_BRIDGE"
  ip -4 addr show dev "$NODE_BRIDGE" | grep " $KUBERNETES_SERVICE_IP/" >/dev/null ||
    ip addr add "$KUBERNETES_SERVICE_IP/32" dev "$NODE_BRIDGE"
  echo 0 >"/proc/sys/net/ipv4/conf/$NODE_BRIDGE/forwarding"
  v6="/proc/sys/net/ipv6/conf/$NODE_BRIDGE/disable_ipv6"
  [[ ! -e "$v6" ]] || echo 1 >"$v6"
  ip link set "$NODE_BRIDGE" up
  # Addresses that must never leave by the default route, even if forwarding is turned
  # on later: the Service range (but for the bridge's own, local, KUBERNETES_SERVICE_IP)
  # and kwok's made-up node and pod addresses, where the API server, which dials nodes
  # at their InternalIP, would otherwise send `kubectl logs` of a fake pod.
  ip route replace blackhole "$SERVICE_CLUSTER_IP_RANGE"
  ip route replace blackhole "$FAKE_NODE_NETWORK"
}

start_forwarders() {
  local f name addr port to
  for f in "${FORWARDS[@]}"; do
    read -r name addr port to <<<"$f"
    alive "$name" && continue
    start "$name" TCP-LISTEN:"$port",bind="$addr",fork,reuseaddr TCP:127.0.0.1:"$to"
  done
}

# ------------------------------------------------------------------ DNS ----

# CoreDNS reads Services and EndpointSlices as user warren:coredns, which may read no
# more; the API server calls the kubelet (logs, exec) as kube-apiserver-kubelet-client,
# with the built-in role for that.
node_rbac() {
  k apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "warren:coredns"}
rules:
- {apiGroups: [""], resources: [services, namespaces, pods], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "warren:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "warren:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "warren:coredns"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "warren:apiserver-kubelet-client"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}
EOF
}

coredns_ready() { curl -fsS "http://127.0.0.1:$COREDNS_READY_PORT/ready" >/dev/null 2>&1; }

start_coredns() {
  alive coredns && return 0
  check_port coredns "$COREDNS_READY_PORT"
  start coredns -conf "$NODE_DIR/Corefile"
  wait_for "CoreDNS ready" "$START_TIMEOUT" coredns_ready ||
    { tail -n 20 "$LOGS/coredns.log" >&2; die "CoreDNS did not become ready (log: $LOGS/coredns.log)"; }
}

# ------------------------------------------------------------ containerd ----

# No registry is reachable: every image the node runs is imported, the sandbox
# ("pause") image among them. images.sh builds the archives when they are missing.
import_images() {
  local pause have
  bash "$HERE/images.sh" import "$CONTAINERD_SOCK" >&2 || die "deploy/local/images.sh import failed"
  pause="$(bash "$HERE/images.sh" ref pause)"
  have="$("${CTR[@]}" images ls -q)"
  grep -qxF "$pause" <<<"$have" || die "the sandbox image $pause is not in containerd"
}

start_containerd() {
  alive containerd && return 0
  mkdir -p "$CONTAINERD_DIR"
  # No registry may be contacted: a pull of an image that was not imported fails at
  # once on a closed loopback port instead of going out.
  HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY='' \
    start containerd --config "$CONTAINERD_DIR/config.toml" --log-level warn
  wait_for "containerd" 30 "${CTR[@]}" version ||
    { tail -n 20 "$LOGS/containerd.log" >&2; die "containerd did not answer (log: $LOGS/containerd.log)"; }
  import_images
}

# ---------------------------------------------------------------- kubelet ----

# Every v1 hierarchy needs CGROUP_ROOT before the kubelet starts (it checks).
make_cgroup_root() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -e "$h/cgroup.procs" && ! -e "$h/cgroup.controllers" ]] && mkdir -p "$h$CGROUP_ROOT"
  done
  return 0
}

start_kubelet() {
  alive kubelet && return 0
  # Another kubelet on this machine would hold this port (and maybe 10250 on all addresses).
  check_port kubelet "$KUBELET_HEALTHZ_PORT"
  make_cgroup_root
  # The kubelet creates /var/log/containers (a fixed path) for its log symlinks; note
  # whether it was there so `down` removes it only if it was ours.
  [[ -d /var/log/containers ]] || touch "$NODE_DIR/made-var-log-containers"
  start kubelet --config="$KUBELET_DIR/config.yaml" --kubeconfig="$PKI/kubelet.kubeconfig" \
    --root-dir="$KUBELET_DIR/root" --cert-dir="$KUBELET_DIR/pki" \
    --hostname-override="$REAL_NODE_NAME" --node-ip="$NODE_IP" \
    --node-labels="$REAL_NODE_LABEL=true" --v=1
}

real_node_ready() {
  [[ "$(k get node "$REAL_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# --------------------------------------------------------------- up/down ----

node_up() {
  node_enabled || return 0
  ((EUID == 0)) || die "the real node needs root (bridge, mounts, cgroups); WARREN_REAL_NODE=0 leaves it out"
  need_node_packages
  write_node_config
  node_network
  start_forwarders
  node_rbac
  start_coredns
  start_containerd
  start_kubelet
  wait_for "node $REAL_NODE_NAME Ready" "$START_TIMEOUT" real_node_ready ||
    { tail -n 30 "$LOGS/kubelet.log" >&2; die "node $REAL_NODE_NAME did not become Ready (log: $LOGS/kubelet.log)"; }
}

node_alive() {
  local c
  node_enabled || return 0
  for c in "${NODE_COMPONENTS[@]}"; do alive "$c" || return 1; done
}

# SIGKILL to every container task, while containerd still runs to do it.
kill_containers() {
  alive containerd || return 0
  local id
  for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks kill --all --signal SIGKILL "$id" >/dev/null 2>&1 || true
  done
}

# Shims outlive containerd by design; ours name our socket on their command line.
kill_shims() {
  local p
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/exe" 2>/dev/null)" == */containerd-shim-runc-v2 ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -F -- "-address $CONTAINERD_SOCK " >/dev/null && kill -KILL "${p#/proc/}" 2>/dev/null
  done
  return 0
}

# Mounts under the node's dir (pod volumes, container rootfs, network namespaces),
# deepest first.
unmount_node() {
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(findmnt -rn -o TARGET 2>/dev/null | grep -F "$NODE_DIR/" | sort -r)
}

remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
    [[ -d "$d" ]] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

remove_log_links() {
  local l
  for l in /var/log/containers/*.log; do
    [[ -L "$l" && "$(readlink "$l")" == "$NODE_DIR/"* ]] && rm -f "$l"
  done
  [[ -f "$NODE_DIR/made-var-log-containers" ]] && rmdir /var/log/containers 2>/dev/null
  return 0
}

# `down` in three steps, between which cluster.sh stops the control plane, so that
# the components' exits overlap:
#   node_stop      the forwarders, then the kubelet and CoreDNS with OTHERS (names of
#                  control-plane components to stop in the same batch), then every
#                  container, through containerd
#   (cluster.sh)   containerd with the API server, then etcd
#   node_cleanup   what outlives them: shims, mounts, cgroups, log links, bridge, routes
# All harmless when nothing of the node exists.
node_stop() { # others...
  local f name pid forwarders=()
  # The forwarders fork a child per connection, in the forwarder's process group.
  for f in "${FORWARDS[@]}"; do
    read -r name _ <<<"$f"
    forwarders+=("$name")
    if pid="$(pid_of "$name")"; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
  done
  stop "${forwarders[@]}" kubelet coredns "$@"
  kill_containers
}

node_cleanup() {
  kill_shims
  unmount_node
  remove_cgroups
  remove_log_links
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link delete "$NODE_BRIDGE"
    log "bridge $NODE_BRIDGE removed"
  fi
  ip route del blackhole "$SERVICE_CLUSTER_IP_RANGE" 2>/dev/null || true
  ip route del blackhole "$FAKE_NODE_NETWORK" 2>/dev/null || true
}

node_status() {
  local c pid
  node_enabled || { echo "  real node: disabled (WARREN_REAL_NODE=0)"; return 0; }
  for c in "${NODE_COMPONENTS[@]}"; do
    if pid="$(pid_of "$c")"; then
      printf '  %-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '  %-24s stopped\n' "$c"
    fi
  done
}
