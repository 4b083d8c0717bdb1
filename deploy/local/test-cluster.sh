#!/usr/bin/env bash
# End-to-end checks of the local cluster (deploy/local/cluster.sh).  Expects
# the cluster to be up (`make test` runs `cluster.sh up` first; this script
# also brings it up if it is not).  Prints one line per check and ends with
# "N passed, N failed"; exits non-zero if any check failed.
#
# NOTE: check 4 runs `cluster.sh down` + `up`, so the cluster is recreated
# (empty) by this script; it is left up at the end. Check 5 runs a real container
# on the real node (node.sh); it needs RabbitMQ and starts it when it is not up.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
LOG_TAG=test-cluster
# shellcheck source=lib.sh
. "$HERE/lib.sh"

CLUSTER="$HERE/cluster.sh"
KUBECTL="$WARREN_K8S_BIN/kubectl"
NS="warren-e2e"
TIMEOUT="${WARREN_TEST_TIMEOUT:-90}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

k() { "$KUBECTL" --kubeconfig="$WARREN_KUBECONFIG" --request-timeout=20s "$@"; }

running_pods() { # label selector
  k -n "$NS" get pods -l "$1" --field-selector=status.phase=Running -o name | grep -c . || true
}
all_pods() { k -n "$NS" get pods -l "$1" -o name | grep -c . || true; }
running_is() { [[ "$(running_pods "$1")" == "$2" && "$(all_pods "$1")" == "$2" ]]; }
no_pods() { [[ "$(all_pods "$1")" == 0 ]]; }

ready_nodes() {
  k get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true
}
nodes_ready() { [[ "$(ready_nodes)" == "$FAKE_NODE_COUNT" ]]; }

# What `cluster.sh down` must not leave behind of the real node (empty when nothing).
node_leftovers() {
  local what=""
  # (nod[e]: this grep's own command line does not match)
  grep -lsE -- "$WARREN_STATE/nod[e]/" /proc/[0-9]*/cmdline >/dev/null && what+=" processes naming $WARREN_STATE/node"
  [[ -n "$(ss -Hltn "src $NODE_IP or src $KUBERNETES_SERVICE_IP" 2>/dev/null)" ]] && what+=" listeners on the bridge addresses"
  findmnt -rn -o TARGET | grep -F "$WARREN_STATE/" >/dev/null && what+=" mounts under $WARREN_STATE"
  compgen -G "/sys/fs/cgroup/*/warren-node" >/dev/null && what+=" cgroups warren-node"
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && what+=" bridge $NODE_BRIDGE"
  ip route show type blackhole | grep -F -e "$SERVICE_CLUSTER_IP_RANGE" -e "$FAKE_NODE_NETWORK" >/dev/null &&
    what+=" blackhole routes"
  echo "$what"
}

echo "== local cluster tests (kubernetes $KUBERNETES_VERSION, kwok $KWOK_VERSION)"
if ! bash "$CLUSTER" up >"$TMP/up0.log" 2>&1; then
  cat "$TMP/up0.log"
  fail "cluster.sh up"
  summary
  exit 1
fi

# ---- 1. versions and nodes -------------------------------------------------
server_version="$(k version -o json 2>/dev/null | jq -r .serverVersion.gitVersion)"
client_version="$(k version -o json 2>/dev/null | jq -r .clientVersion.gitVersion)"
if [[ "$server_version" == "$KUBERNETES_VERSION" ]]; then
  pass "kubectl version: server is $server_version"
else
  fail "kubectl version: server is '$server_version', want $KUBERNETES_VERSION"
fi
if [[ "$client_version" == "$KUBERNETES_VERSION" ]]; then
  pass "kubectl version: client is $client_version"
else
  fail "kubectl version: client is '$client_version', want $KUBERNETES_VERSION"
fi
n="$(ready_nodes)"
if [[ "$n" == "$FAKE_NODE_COUNT" ]]; then
  pass "all $n fake nodes Ready"
else
  fail "$n of $FAKE_NODE_COUNT fake nodes Ready"
  k get nodes
fi
pods_cap="$(k get nodes -l type=kwok -o json | jq '[.items[].status.allocatable.pods | tonumber] | add')"
if [[ "$pods_cap" =~ ^[0-9]+$ && "$pods_cap" -ge 100 ]]; then
  pass "fake nodes can hold $pods_cap pods (>= 100)"
else
  fail "fake nodes can hold '$pods_cap' pods, want >= 100"
fi

# ---- 2. Deployment: 3 -> 7 -> 0 Running pods --------------------------------
k delete namespace "$NS" --ignore-not-found --wait=true >/dev/null 2>&1
k create namespace "$NS" >/dev/null
cat >"$TMP/deploy.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/pause:3.10
EOF
if k -n "$NS" apply -f "$TMP/deploy.yaml" >/dev/null &&
  wait_for "3 Running web pods" "$TIMEOUT" running_is app=web 3; then
  pass "Deployment with 3 replicas has 3 Running pods"
else
  fail "Deployment with 3 replicas: $(running_pods app=web) Running of $(all_pods app=web) pods after ${TIMEOUT}s"
fi
if k -n "$NS" scale deployment/web --replicas=7 >/dev/null &&
  wait_for "7 Running web pods" "$TIMEOUT" running_is app=web 7; then
  pass "scaled to 7: 7 Running pods"
else
  fail "scaled to 7: $(running_pods app=web) Running of $(all_pods app=web) pods after ${TIMEOUT}s"
fi
nodes_used="$(k -n "$NS" get pods -l app=web -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | grep -c . || true)"
if [[ "$nodes_used" -ge 2 ]]; then
  pass "pods spread over $nodes_used fake nodes"
else
  fail "pods scheduled on $nodes_used nodes, want >= 2"
fi
if k -n "$NS" scale deployment/web --replicas=0 >/dev/null &&
  wait_for "no web pods" "$TIMEOUT" no_pods app=web; then
  pass "scaled to 0: all pods removed"
else
  fail "scaled to 0: $(all_pods app=web) pods left after ${TIMEOUT}s"
fi

# ---- 3. CRD with a CEL rule, applied server-side ----------------------------
CEL_MSG="spec.minReplicas must not exceed spec.maxReplicas"
cat >"$TMP/crd.yaml" <<EOF
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.warren.dev
spec:
  group: e2e.warren.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [minReplicas, maxReplicas]
            properties:
              minReplicas: {type: integer, minimum: 0}
              maxReplicas: {type: integer, minimum: 0}
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: "$CEL_MSG"
EOF
crd_established() {
  [[ "$(k get crd widgets.e2e.warren.dev -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" == True ]]
}
if k apply --server-side --field-manager=warren-e2e -f "$TMP/crd.yaml" >/dev/null &&
  wait_for "the Widget CRD Established" "$TIMEOUT" crd_established &&
  wait_for "Widgets served" "$TIMEOUT" k -n "$NS" get widgets; then
  pass "CRD applied server-side is Established and served"
else
  fail "CRD applied server-side is not served"
fi
widget() { # name min max
  printf 'apiVersion: e2e.warren.dev/v1\nkind: Widget\nmetadata: {name: %s}\nspec: {minReplicas: %s, maxReplicas: %s}\n' "$1" "$2" "$3"
}
if widget good 1 3 | k -n "$NS" apply --server-side --field-manager=warren-e2e -f - >/dev/null 2>"$TMP/good.err" &&
  [[ "$(k -n "$NS" get widget good -o jsonpath='{.spec.maxReplicas}')" == 3 ]]; then
  pass "valid Widget accepted"
else
  fail "valid Widget rejected: $(cat "$TMP/good.err")"
fi
if widget bad 5 2 | k -n "$NS" apply --server-side --field-manager=warren-e2e -f - >"$TMP/bad.out" 2>&1; then
  fail "Widget violating the CEL rule was accepted"
elif grep -qF "$CEL_MSG" "$TMP/bad.out"; then
  pass "Widget violating the CEL rule rejected with: $CEL_MSG"
else
  fail "Widget rejected, but without the rule's message: $(cat "$TMP/bad.out")"
fi
if ! k -n "$NS" get widget bad >/dev/null 2>&1; then
  pass "rejected Widget was not stored"
else
  fail "rejected Widget exists"
fi

# ---- 4. up is idempotent; down + up gives a fresh cluster --------------------
k -n default create configmap warren-e2e-marker --from-literal=before=down >/dev/null 2>&1
t0=$SECONDS
if bash "$CLUSTER" up >"$TMP/up2.log" 2>&1 && grep -q "already up" "$TMP/up2.log" && ((SECONDS - t0 <= 10)); then
  pass "second 'cluster.sh up' says it is already up ($((SECONDS - t0))s)"
else
  fail "second 'cluster.sh up' ($((SECONDS - t0))s): $(tr '\n' ' ' <"$TMP/up2.log")"
fi
if k -n default get configmap warren-e2e-marker >/dev/null 2>&1; then
  pass "second 'up' kept the cluster's objects"
else
  fail "objects lost after second 'up'"
fi
if bash "$CLUSTER" down >"$TMP/down.log" 2>&1; then
  pass "cluster.sh down"
else
  fail "cluster.sh down: $(tr '\n' ' ' <"$TMP/down.log")"
fi
leftover=""
for f in "$WARREN_STATE" "$WARREN_KUBECONFIG"; do [[ -e "$f" ]] && leftover+=" $f"; done
if [[ -z "$leftover" ]] && ! curl -ksS --max-time 2 "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1 &&
  ! curl -sS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" >/dev/null 2>&1; then
  pass "after down: apiserver and etcd gone, state removed"
else
  fail "after down: leftovers:${leftover:- (none)}; apiserver/etcd port still answers?"
fi
if [[ "$WARREN_REAL_NODE" == 1 ]]; then
  node_leftovers="$(node_leftovers)"
  if [[ -z "$node_leftovers" ]]; then
    pass "after down: no kubelet, containerd, shim, CoreDNS or forwarder left; no mount, cgroup or bridge"
  else
    fail "after down: the real node left:$node_leftovers"
  fi
fi
if bash "$CLUSTER" down >"$TMP/down2.log" 2>&1; then
  pass "second 'cluster.sh down' is harmless"
else
  fail "second 'cluster.sh down': $(tr '\n' ' ' <"$TMP/down2.log")"
fi
t0=$SECONDS
if bash "$CLUSTER" up >"$TMP/up3.log" 2>&1 && grep -q "^export KUBECONFIG=$WARREN_KUBECONFIG\$" "$TMP/up3.log"; then
  pass "'cluster.sh up' after down: Ready in $((SECONDS - t0))s"
else
  fail "'cluster.sh up' after down: $(tail -n 20 "$TMP/up3.log" | tr '\n' ' ')"
fi
if wait_for "$FAKE_NODE_COUNT fake nodes Ready" "$TIMEOUT" nodes_ready; then
  pass "fresh cluster: all $FAKE_NODE_COUNT fake nodes Ready"
else
  fail "fresh cluster: $(ready_nodes) of $FAKE_NODE_COUNT nodes Ready"
fi
if ! k -n default get configmap warren-e2e-marker >/dev/null 2>&1 && ! k get namespace "$NS" >/dev/null 2>&1 &&
  ! k get crd widgets.e2e.warren.dev >/dev/null 2>&1; then
  pass "fresh cluster: objects from before down are gone"
else
  fail "fresh cluster still has objects created before down"
fi
k create namespace "$NS" >/dev/null 2>&1
if k -n "$NS" apply -f "$TMP/deploy.yaml" >/dev/null &&
  wait_for "3 Running web pods" "$TIMEOUT" running_is app=web 3; then
  pass "fresh cluster: Deployment gets 3 Running pods"
else
  fail "fresh cluster: $(running_pods app=web) Running of $(all_pods app=web) pods"
fi
nodes_used="$(k -n "$NS" get pods -l app=web -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}')"
if [[ -n "$nodes_used" ]] && ! grep -qx "$REAL_NODE_NAME" <<<"$nodes_used"; then
  pass "pods that do not tolerate the real node's taint stay on kwok's nodes"
else
  fail "web pods on nodes: $(tr '\n' ' ' <<<"$nodes_used")"
fi
k delete namespace "$NS" --wait=false >/dev/null 2>&1

if [[ "$WARREN_REAL_NODE" == 1 ]]; then
  # shellcheck source=test-node.sh
  . "$HERE/test-node.sh"
fi

summary
