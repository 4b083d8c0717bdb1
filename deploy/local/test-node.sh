# shellcheck shell=bash
# Checks of the real node (node.sh), sourced by test-cluster.sh (uses its k, TMP,
# TIMEOUT, pass/fail) once the cluster is up: the node is Ready on containerd; a pod
# that selects it runs a real container under the restricted Pod Security Standard,
# gets an address on the node's bridge, reaches RabbitMQ, the API server and
# CoreDNS the way the docs say, serves `kubectl logs` and `exec`, and goes on SIGTERM
# within its grace period.
#
# The container is deploy/local/node/probe (Go, standard library), built here FROM
# scratch with buildah into an archive and imported: no registry is involved.

NODE_NS=warren-e2e-node
PROBE_IMAGE=localhost/warren/node-probe:test
PROBE_GRACE=30
NODE_CTR=(ctr --address "$WARREN_STATE/node/containerd/containerd.sock" --namespace k8s.io)

node_field() { k get node "$REAL_NODE_NAME" -o jsonpath="$1" 2>/dev/null; }

ip_int() {
  local a b c d
  IFS=. read -r a b c d <<<"$1"
  echo $(((a << 24) | (b << 16) | (c << 8) | d))
}
in_cidr() { # ip cidr
  local bits="${2#*/}" mask
  [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || return 1
  mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
  ((($(ip_int "$1") & mask) == ($(ip_int "${2%/*}") & mask)))
}

# The probe binary in an image FROM scratch (uid 65532), imported into the node's containerd.
build_probe_image() {
  local dir="$TMP/probe" bah
  command -v buildah >/dev/null 2>&1 ||
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah) >&2
  mkdir -p "$dir"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/probe" "$HERE/node/probe/main.go" || return 1
  printf 'FROM scratch\nCOPY probe /probe\nUSER 65532:65532\nENTRYPOINT ["/probe"]\n' >"$dir/Containerfile"
  bah=(buildah --root "$dir/storage" --runroot "$dir/run" --storage-driver vfs)
  "${bah[@]}" bud --quiet --pull=never --tag "$PROBE_IMAGE" "$dir" >/dev/null &&
    "${bah[@]}" push --quiet "$PROBE_IMAGE" "oci-archive:$dir/probe.tar:$PROBE_IMAGE" &&
    "${NODE_CTR[@]}" images import "$dir/probe.tar" >/dev/null
  local rc=$?
  "${bah[@]}" rm --all >/dev/null 2>&1
  rm -rf "$dir/storage" "$dir/run"
  return $rc
}

# shellcheck source=local-release.sh
. "$HERE/local-release.sh"

# The probe pod, which tolerates and selects the real node; it runs in a namespace
# from local_namespace (restricted Pod Security, RabbitMQ as the Service rabbitmq).
probe_manifests() {
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: $NODE_NS}
spec:
  nodeSelector: {$REAL_NODE_LABEL: "true"}
  tolerations: [{key: $REAL_NODE_TAINT_KEY, operator: Equal, value: "true", effect: NoSchedule}]
  terminationGracePeriodSeconds: $PROBE_GRACE
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: probe
    image: $PROBE_IMAGE
    imagePullPolicy: Never
    env:
    - {name: PROBE_AMQP, value: "rabbitmq:$WARREN_AMQP_PORT"}
    - {name: PROBE_RESOLVE, value: "kubernetes.default,rabbitmq"}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
EOF
}

probe_logs() { k -n "$NODE_NS" logs probe 2>/dev/null; }
probe_reported() { probe_logs | grep '^probe: waiting for SIGTERM$' >/dev/null; }
probe_running() { [[ "$(k -n "$NODE_NS" get pod probe -o jsonpath='{.status.phase}' 2>/dev/null)" == Running ]]; }
probe_gone() { ! k -n "$NODE_NS" get pod probe >/dev/null 2>&1; }

# expect_log DESCRIPTION PATTERN: pass when a line of the probe's log matches PATTERN.
expect_log() {
  if grep -qE -- "$2" "$TMP/probe.log"; then pass "$1"; else fail "$1 (log: $(tr '\n' '|' <"$TMP/probe.log"))"; fi
}

check_node_registered() {
  local ready runtime ip taints
  ready="$(node_field '{.status.conditions[?(@.type=="Ready")].status}')"
  runtime="$(node_field '{.status.nodeInfo.containerRuntimeVersion}')"
  ip="$(node_field '{.status.addresses[?(@.type=="InternalIP")].address}')"
  taints="$(node_field '{range .spec.taints[*]}{.key}={.value}:{.effect}{"\n"}{end}')"
  if [[ "$ready" == True && "$runtime" == containerd://* ]]; then
    pass "real node $REAL_NODE_NAME Ready on $runtime"
  else
    fail "real node $REAL_NODE_NAME: Ready=$ready runtime=$runtime"
  fi
  if [[ "$ip" == "$NODE_IP" ]] && grep -qx "$REAL_NODE_TAINT_KEY=true:NoSchedule" <<<"$taints"; then
    pass "real node's address is $ip (the bridge), tainted $REAL_NODE_TAINT_KEY=true:NoSchedule"
  else
    fail "real node's address is '$ip', taints: $(tr '\n' ' ' <<<"$taints")"
  fi
}

# Packets from pods may be delivered to the bridge's own addresses only: the host does
# not forward what arrives on the bridge, and kwok's made-up addresses go nowhere.
check_node_fence() {
  local fwd
  fwd="$(cat "/proc/sys/net/ipv4/conf/$NODE_BRIDGE/forwarding" 2>/dev/null)"
  if [[ "$fwd" == 0 ]] && ip route show type blackhole | grep -F "$FAKE_NODE_NETWORK" >/dev/null &&
    ip route show type blackhole | grep -F "$SERVICE_CLUSTER_IP_RANGE" >/dev/null; then
    pass "no forwarding from $NODE_BRIDGE; $SERVICE_CLUSTER_IP_RANGE and $FAKE_NODE_NETWORK are blackholes"
  else
    fail "forwarding on $NODE_BRIDGE is '$fwd'; blackhole routes: $(ip route show type blackhole | tr '\n' ' ')"
  fi
}

check_probe_pod() {
  local pod_ip host_ip
  if local_namespace "$NODE_NS" >"$TMP/probe-apply.log" 2>&1 &&
    probe_manifests | k apply -f - >>"$TMP/probe-apply.log" 2>&1; then
    pass "probe pod admitted in a namespace enforcing the restricted Pod Security Standard"
  else
    fail "probe pod rejected: $(tr '\n' ' ' <"$TMP/probe-apply.log")"
    return
  fi
  if wait_for "the probe pod Running and reporting" "$TIMEOUT" probe_reported && probe_running; then
    pass "probe pod runs as a real container on $(k -n "$NODE_NS" get pod probe -o jsonpath='{.spec.nodeName}')"
  else
    fail "probe pod: $(k -n "$NODE_NS" get pod probe -o wide --no-headers 2>&1)"
    k -n "$NODE_NS" describe pod probe | tail -n 15
    return
  fi
  probe_logs >"$TMP/probe.log"
  pod_ip="$(k -n "$NODE_NS" get pod probe -o jsonpath='{.status.podIP}')"
  host_ip="$(k -n "$NODE_NS" get pod probe -o jsonpath='{.status.hostIP}')"
  if in_cidr "$pod_ip" "$NODE_BRIDGE_CIDR" && [[ "$host_ip" == "$NODE_IP" ]]; then
    pass "pod address $pod_ip is on the bridge ($NODE_BRIDGE_CIDR), host $host_ip"
  else
    fail "pod address '$pod_ip' (host '$host_ip'), want one in $NODE_BRIDGE_CIDR on $NODE_IP"
  fi
  expect_log "kubectl logs works; the container runs as uid 65532" '^probe: uid=65532 gid=65532$'
  if grep -q '^route ' "$TMP/probe.log" && ! grep '^route ' "$TMP/probe.log" |
    grep -qvE "^route (${NODE_BRIDGE_CIDR//./\\.}|${SERVICE_CLUSTER_IP_RANGE//./\\.}) "; then
    pass "the pod has routes to the bridge and the Service range only (no default route)"
  else
    fail "the pod's routes: $(grep '^route ' "$TMP/probe.log" | tr '\n' '|')"
  fi
  expect_log "CoreDNS: kubernetes.default resolves to $KUBERNETES_SERVICE_IP" \
    "^resolve kubernetes.default -> ${KUBERNETES_SERVICE_IP//./\\.}\$"
  expect_log "CoreDNS: the headless Service rabbitmq resolves to the node's forwarder $NODE_IP" \
    "^resolve rabbitmq -> ${NODE_IP//./\\.}\$"
  expect_log "RabbitMQ answers through the forwarder (AMQP Connection.Start)" \
    "^amqp rabbitmq:$WARREN_AMQP_PORT: Connection.Start\$"
  expect_log "the API server answers the pod's ServiceAccount at KUBERNETES_SERVICE_HOST" \
    "^apiserver https://${KUBERNETES_SERVICE_IP//./\\.}:443/version: 200 OK .*\"gitVersion\":\"$KUBERNETES_VERSION\""
  if [[ "$(k -n "$NODE_NS" exec probe -- /probe version 2>&1)" == "probe ok" ]]; then
    pass "kubectl exec works"
  else
    fail "kubectl exec: $(k -n "$NODE_NS" exec probe -- /probe version 2>&1 | tail -n 3)"
  fi
}

check_probe_termination() {
  local t0 took follow
  probe_running || return
  k -n "$NODE_NS" logs -f probe >"$TMP/probe-follow.log" 2>&1 &
  follow=$!
  wait_for "the log stream" 10 grep -q '^probe: waiting for SIGTERM$' "$TMP/probe-follow.log"
  t0=$(date +%s%N)
  k -n "$NODE_NS" delete pod probe --wait=false >/dev/null
  wait_for "the probe pod gone" $((PROBE_GRACE + 10)) probe_gone
  took=$((($(date +%s%N) - t0) / 1000000))
  wait "$follow" 2>/dev/null
  if probe_gone && ((took < PROBE_GRACE * 1000)) && grep -q '^probe: got terminated, exiting$' "$TMP/probe-follow.log"; then
    pass "deleting the pod delivers SIGTERM; gone in ${took} ms (grace period ${PROBE_GRACE} s)"
  else
    fail "deletion: gone=$(probe_gone && echo yes || echo no) after ${took} ms; log ends: $(tail -n 2 "$TMP/probe-follow.log" | tr '\n' '|')"
  fi
}

echo "== the real node ($REAL_NODE_NAME)"
check_node_registered
check_node_fence
if ! (exec 3<>"/dev/tcp/127.0.0.1/$WARREN_AMQP_PORT") 2>/dev/null; then
  bash "$HERE/rabbitmq.sh" up >"$TMP/rabbitmq.log" 2>&1 || cat "$TMP/rabbitmq.log"
fi
if build_probe_image >"$TMP/probe-build.log" 2>&1; then
  pass "test image $PROBE_IMAGE built FROM scratch and imported into the node's containerd"
  check_probe_pod
  check_probe_termination
else
  fail "test image: $(tail -n 5 "$TMP/probe-build.log" | tr '\n' ' ')"
fi
k delete namespace "$NODE_NS" --wait=false >/dev/null 2>&1
