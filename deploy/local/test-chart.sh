#!/usr/bin/env bash
# Checks of the Helm chart (charts/warren) against the local cluster and RabbitMQ:
# lint and render rules, `helm install` (kwok runs the pod), and whether the
# chart's RBAC is exactly enough: the operator binary runs here under the chart's
# ServiceAccount (impersonated) and must scale a Deployment from a TaskQueue whose
# credentials come from a Secret, with no request forbidden.
# Expects the cluster up and target/debug/warren-operator built (`make test` does
# both). Prints one line per check and "N passed, N failed"; exits non-zero on a failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
LOG_TAG=test-chart
# shellcheck source=lib.sh
. "$HERE/lib.sh"

CHART="$WARREN_ROOT/charts/warren"
OPERATOR="${WARREN_OPERATOR_BIN:-$WARREN_ROOT/target/debug/warren-operator}"
MGMT="$WARREN_MANAGEMENT_URL"
RELEASE_NS="warren-system"
NS="warren-chart-e2e"
QUEUE="chart_e2e_$$"
TIMEOUT="${WARREN_TEST_TIMEOUT:-90}"
TMP="$(mktemp -d)"
OPERATOR_PID=""

k() { kubectl --kubeconfig="$WARREN_KUBECONFIG" --request-timeout=20s "$@"; }

cleanup() {
  [[ -n "$OPERATOR_PID" ]] && kill "$OPERATOR_PID" 2>/dev/null
  helm --kubeconfig="$WARREN_KUBECONFIG" uninstall warren -n "$RELEASE_NS" >/dev/null 2>&1
  k delete namespace "$NS" "$RELEASE_NS" --wait=false >/dev/null 2>&1
  mgmt "/api/queues/%2f/$QUEUE" -X DELETE >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "== chart tests (helm $HELM_VERSION)"
[[ -x "$OPERATOR" ]] || { echo "no operator binary at $OPERATOR: cargo build -p warren-operator" >&2; exit 1; }

# ---- rendering ---------------------------------------------------------------
check "helm lint --strict" helm lint --strict "$CHART"
render() { helm template warren "$CHART" -n "$RELEASE_NS" "$@"; }
cluster_wide() { render | grep -q '^kind: ClusterRole$'; }
one_namespace() {
  local out
  out=$(render --set watchNamespace=apps)
  grep -q -- '--namespace=apps' <<<"$out" && ! grep -q '^kind: ClusterRole' <<<"$out"
}
check "default install watches all namespaces (ClusterRole)" cluster_wide
check "watchNamespace gives a Role in that namespace and --namespace" one_namespace
rejects() { # expected-message helm-args...: rendering must fail naming the problem
  local expected="$1"; shift
  local out
  if out=$(render "$@" 2>&1); then echo "rendered: $*"; return 1; fi
  grep -q -- "$expected" <<<"$out" || { echo "$out"; return 1; }
}
check "rejects 2 replicas without leader election" rejects "needs leaderElection.enabled=true" --set replicaCount=2 --set leaderElection.enabled=false
check "rejects a management URL without http(s)://" rejects "/broker/managementUrl" --set broker.managementUrl=rabbitmq:15672
check "rejects an unknown log format" rejects "/logFormat" --set logFormat=xml
existing_secret() {
  local out
  out=$(render --set broker.existingSecret=mine)
  ! grep -q '^kind: Secret' <<<"$out" && grep -q 'name: mine' <<<"$out"
}
check "existingSecret: no Secret rendered, the pod reads the named one" existing_secret

# ---- install -----------------------------------------------------------------
# A previous run's namespaces may still be terminating.
k delete namespace "$NS" "$RELEASE_NS" --ignore-not-found --wait --timeout=60s >/dev/null 2>&1
check "helm install (CRD from crds/, operator Deployment available)" \
  helm --kubeconfig="$WARREN_KUBECONFIG" install warren "$CHART" -n "$RELEASE_NS" --create-namespace \
    --set broker.managementUrl="$MGMT" --wait --timeout "${TIMEOUT}s"
check "TaskQueue CRD established" k wait --for=condition=Established crd/taskqueues.warren.dev --timeout=30s
samples_valid() { # the documented samples are what the API server accepts
  local sample
  for sample in "$WARREN_ROOT"/deploy/samples/*.yaml; do
    k -n default apply --dry-run=server -f "$sample" >/dev/null || return 1
  done
}
check "deploy/samples/*.yaml accepted by the API server (dry run)" samples_valid
examples_valid() { # the chart's examples: their workers and TaskQueues as the API server takes them
  local example
  for example in "$CHART"/examples/*.yaml; do
    render -f "$example" --show-only templates/workers.yaml |
      k -n default apply --dry-run=server -f - >/dev/null || return 1
  done
}
check "charts/warren/examples/*.yaml: workers and TaskQueues accepted by the API server (dry run)" examples_valid
drain_rejected() { # a drainWithin out of range is refused naming the field
  # The output is captured first: under pipefail kubectl's refusal (exit 1) would fail a pipe into grep.
  local out
  out="$(k -n default apply --dry-run=server -f - 2>&1 <<'YAML'
apiVersion: warren.dev/v1alpha1
kind: TaskQueue
metadata: {name: bad-drain}
spec: {queue: q, scaleTargetRef: {name: w}, maxReplicas: 3, drainWithin: 0s}
YAML
)"
  grep -q 'spec.drainWithin must be between 1s and 24h' <<<"$out" || { echo "$out" >&2; return 1; }
}
check "drainWithin: 0s rejected with the field's name" drain_rejected

# ---- the chart's RBAC is enough, and no more ----------------------------------
SA="system:serviceaccount:$RELEASE_NS:warren"
can() { [[ "$(k auth can-i --as="$SA" "$@" 2>/dev/null)" == yes ]]; }
cannot() { [[ "$(k auth can-i --as="$SA" "$@" 2>/dev/null)" == no ]]; }
allowed() {
  can patch deployments.apps --subresource=scale -A && can watch deployments.apps -A &&
    can watch pods -A && can patch pods -A && can watch horizontalpodautoscalers.autoscaling -A
}
denied() {
  cannot delete deployments.apps -A && cannot list secrets -A && cannot update taskqueues.warren.dev -A &&
    cannot update taskqueues.warren.dev --subresource=status -A && cannot update deployments.apps --subresource=scale -A &&
    cannot patch horizontalpodautoscalers.autoscaling -A
}
check "ServiceAccount can patch deployments/scale, list deployments, watch and patch pods, watch HPAs" allowed
check "ServiceAccount cannot delete deployments, list secrets, update TaskQueues, PUT status/scale or patch HPAs" denied

# A kubeconfig that acts as the chart's ServiceAccount (as a token would).
k config view --raw --minify -o json | python3 -c '
import json, sys
config = json.load(sys.stdin)
for user in config["users"]:
    user["user"]["as"] = sys.argv[1]
    user["user"]["as-groups"] = ["system:serviceaccounts", "system:serviceaccounts:" + sys.argv[2], "system:authenticated"]
json.dump(config, sys.stdout)
' "$SA" "$RELEASE_NS" >"$TMP/as-operator.kubeconfig"

k create namespace "$NS" >/dev/null
k -n "$NS" create deployment worker-a --image=warren-worker:e2e --replicas=1 >/dev/null

# ---- `patch pods` narrowed to the deletion cost by the ValidatingAdmissionPolicy --------
as_operator() { kubectl --kubeconfig="$TMP/as-operator.kubeconfig" --request-timeout=20s -n "$NS" "$@"; }
a_pod() { k -n "$NS" get pods -l app=worker-a -o jsonpath='{.items[0].metadata.name}' | grep .; }
refused() { # expected-message kubectl-args...: the operator's identity is refused, naming why
  local want="$1" out
  shift
  out=$(as_operator "$@" 2>&1) && return 1
  grep -qF "$want" <<<"$out" || { echo "$out"; return 1; }
}
patch_as_operator() { as_operator patch pod "$POD" "$@"; }
label_refused() {
  refused "may not change a pod's labels" patch pod "$POD" --type=merge -p '{"metadata":{"labels":{"sneaky":"yes"}}}'
}
if wait_for "a worker-a pod" "$TIMEOUT" a_pod; then
  POD=$(a_pod)
  # The policy is enforced once the API server has compiled it: wait for that.
  check "as the operator: changing a pod's label is refused by the admission policy" \
    wait_for "the policy in force" 30 label_refused
  check "as the operator: changing a pod's image is refused" \
    refused "may not change a pod's spec" patch pod "$POD" --type=json \
    -p '[{"op": "replace", "path": "/spec/containers/0/image", "value": "evil:latest"}]'
  check "as the operator: adding another annotation is refused" \
    refused "no pod annotation but controller.kubernetes.io/pod-deletion-cost" patch pod "$POD" \
    --type=merge -p '{"metadata":{"annotations":{"other":"x"}}}'
  check "as the operator: setting controller.kubernetes.io/pod-deletion-cost is allowed" \
    patch_as_operator --type=merge -p '{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"7"}}}'
  check "as cluster admin (not the operator): changing a label is still allowed" \
    k -n "$NS" label pod "$POD" admin-was-here=yes
else
  fail "no worker-a pod to test the admission policy on"
fi
k -n "$NS" create secret generic rabbit-creds \
  --from-literal=username="$WARREN_MANAGEMENT_USERNAME" \
  --from-literal=password="$WARREN_MANAGEMENT_PASSWORD" >/dev/null
# TaskQueues may use only Secrets that opt in (the chart's broker.secretLabel).
k -n "$NS" label secret rabbit-creds warren.dev/broker-credentials=true >/dev/null
mgmt "/api/queues/%2f/$QUEUE" -X PUT -H 'content-type: application/json' \
  -d '{"durable": true}' >/dev/null
for _ in $(seq 30); do
  mgmt "/api/exchanges/%2f/amq.default/publish" -X POST -H 'content-type: application/json' \
    -d "{\"properties\": {}, \"routing_key\": \"$QUEUE\", \"payload\": \"x\", \"payload_encoding\": \"string\"}" >/dev/null
done
cat <<YAML | k -n "$NS" apply -f - >/dev/null
apiVersion: warren.dev/v1alpha1
kind: TaskQueue
metadata: {name: queue-a}
spec:
  queue: $QUEUE
  broker:
    managementUrl: $MGMT
    credentialsSecretRef: {name: rabbit-creds}
  scaleTargetRef: {name: worker-a}
  minReplicas: 1
  maxReplicas: 10
  targetBacklogPerReplica: 10
  pollInterval: 1s
YAML

PORT=$((20000 + RANDOM % 20000))
KUBECONFIG="$TMP/as-operator.kubeconfig" POD_NAMESPACE="$RELEASE_NS" RUST_LOG=info \
  "$OPERATOR" run --metrics-addr "127.0.0.1:$PORT" --management-url "$MGMT" \
  --leader-election --lease-name warren-chart-e2e --lease-duration 5s >"$TMP/operator.log" 2>&1 &
OPERATOR_PID=$!

replicas_are() { [[ "$(k -n "$NS" get deployment worker-a -o jsonpath='{.spec.replicas}')" == "$1" ]]; }
check "as the chart's ServiceAccount: 30 messages scale worker-a 1 -> 3" \
  wait_for "worker-a at 3 replicas" "$TIMEOUT" replicas_are 3
status_and_event() {
  [[ $(k -n "$NS" get tq queue-a -o jsonpath='{.status.desiredReplicas}') == 3 ]] &&
    k -n "$NS" get events.events.k8s.io -o jsonpath='{.items[*].reason}' | grep -qw Scaled
}
cache_reads() {
  curl -fsS "http://127.0.0.1:$PORT/metrics" | grep -Eq '^warren_operator_target_reads_total\{source="cache"\} [1-9]'
}
nothing_forbidden() { ! grep -i forbidden "$TMP/operator.log"; }
check "status written (desiredReplicas 3) and a Scaled Event" status_and_event
check "replica counts from the Deployment watch cache (list/watch allowed)" cache_reads
check "the leader's Lease in $RELEASE_NS" k -n "$RELEASE_NS" get lease warren-chart-e2e
check "no request forbidden in the operator's log" nothing_forbidden
if ((FAILED > 0)); then echo "--- operator log (tail)"; tail -20 "$TMP/operator.log"; fi

uninstalled() {
  helm --kubeconfig="$WARREN_KUBECONFIG" uninstall warren -n "$RELEASE_NS" --wait >/dev/null &&
    ! k -n "$RELEASE_NS" get deployment warren 2>/dev/null &&
    k -n "$NS" get tq queue-a >/dev/null
}
check "helm uninstall removes the operator, keeps the CRD and TaskQueues" uninstalled

# One namespace only: a Role there, nothing elsewhere.
namespaced_release() {
  local sa="system:serviceaccount:$RELEASE_NS:warren-ns"
  helm --kubeconfig="$WARREN_KUBECONFIG" install warren-ns "$CHART" -n "$RELEASE_NS" \
    --set watchNamespace="$NS" --set leaderElection.enabled=false >/dev/null &&
    [[ $(k auth can-i --as="$sa" patch deployments.apps --subresource=scale -n "$NS") == yes ]] &&
    [[ $(k auth can-i --as="$sa" patch deployments.apps --subresource=scale -n default) == no ]] &&
    [[ $(k auth can-i --as="$sa" list taskqueues.warren.dev -A) == no ]] &&
    helm --kubeconfig="$WARREN_KUBECONFIG" uninstall warren-ns -n "$RELEASE_NS" >/dev/null
}
check "watchNamespace=$NS: the ServiceAccount may scale there and nowhere else" namespaced_release

summary
