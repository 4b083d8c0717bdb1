# shellcheck shell=bash
# The steps of test-e2e.sh (sourced by it; uses its k, kn, check, NS, TMP...).

WORKERS="app.kubernetes.io/component=worker"

# ---- install ------------------------------------------------------------------

# shellcheck source=local-release.sh
. "$HERE/local-release.sh"

install_release() {
  local t0
  t0=$(date +%s)
  say "images: build (static musl binaries, buildah) and import into the node's containerd"
  fresh_images "$TMP/images.log"
  log "images built and imported in $(elapsed "$t0")"
  for q in queue_a queue_b; do mgmt "/api/queues/%2f/$q/contents" -X DELETE >/dev/null 2>&1; done
  k delete namespace "$NS" --wait=true --timeout=60s >/dev/null 2>&1
  local_namespace "$NS" || die "cannot create namespace $NS"
  {
    echo "watchNamespace: $NS"
    local_values "$GRACE"
  } >"$TMP/values.yaml"
  t0=$(date +%s)
  say "helm install $RELEASE charts/warren -f charts/warren/examples/seed.yaml (namespace $NS)"
  check "helm install with the seed's workers" \
    helm --kubeconfig="$WARREN_KUBECONFIG" install "$RELEASE" "$WARREN_ROOT/charts/warren" \
    -n "$NS" -f "$WARREN_ROOT/charts/warren/examples/seed.yaml" -f "$TMP/values.yaml"
  INSTALLED_AT=$t0
}

# ---- 1. the operator -------------------------------------------------------------

operator_ready() { [[ "$(kn get deploy "$RELEASE" -o jsonpath='{.status.readyReplicas}')" == 1 ]]; }
operator_pod() { kn get pods -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].metadata.name}'; }
lease_holder() { kn get lease "$RELEASE" -o jsonpath='{.spec.holderIdentity}'; }
reachable() { # taskqueue -> status of BrokerReachable
  kn get taskqueue "$1" -o jsonpath='{.status.conditions[?(@.type=="BrokerReachable")].status}'
}
lease_held_by() { [[ "$(lease_holder)" == "$1" ]]; }
both_reachable() { [[ "$(reachable worker-a)$(reachable worker-b)" == TrueTrue ]]; }

on_real_node() { # pod
  local node id
  node=$(kn get pod "$1" -o jsonpath='{.spec.nodeName}')
  id=$(kn get pod "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')
  echo "node $node, container $id"
  [[ "$node" == "$REAL_NODE_NAME" && "$id" == containerd://* ]]
}

check_operator() {
  say "1. the operator pod"
  if wait_for "operator Ready" "$TIMEOUT" operator_ready; then
    pass "operator Ready $(elapsed "$INSTALLED_AT") after helm install"
  else
    fail "operator not Ready within ${TIMEOUT}s"
    kn describe pods -l app.kubernetes.io/component=operator | tail -20
    return
  fi
  local pod
  pod=$(operator_pod)
  check "operator pod $pod is a real container on $REAL_NODE_NAME" on_real_node "$pod"
  check "the operator pod holds the Lease" wait_for "Lease held by $pod" 30 lease_held_by "$pod"
  check "with its in-cluster ServiceAccount it reads the broker (BrokerReachable=True)" \
    wait_for "BrokerReachable" 30 both_reachable
}

# ---- 2. the seed's scenario ---------------------------------------------------------

# Worker pods, every second, as `kubectl get pods` would show them scaling.
watch_pods() {
  while :; do
    kn get pods -l "$WORKERS" --no-headers \
      -o custom-columns=NAME:.metadata.name,PHASE:.status.phase,NODE:.spec.nodeName 2>/dev/null |
      sed "s/^/$(date +%s) /"
    sleep 1
  done >>"$TMP/pods.log"
}

worker_count() { kn get pods -l "$WORKERS" --no-headers 2>/dev/null | grep -c .; }
no_workers() { [[ "$(worker_count)" == 0 ]]; }

check_seed_scenario() {
  say "2. the seed's scenario: 300 tasks over queue_a and queue_b"
  watch_pods &
  WATCH_PID=$!
  local t0
  t0=$(date +%s)
  "$DISPATCHER" load-test --tasks 300 --mix 1:1 --workers 6 --timeout 120s --json \
    >"$TMP/load.json" 2>"$TMP/load.err"
  local rc=$?
  log "load test finished in $(elapsed "$t0") (exit $rc)"
  check "300 tasks: every result, none failed, lost or duplicated, each from a worker pod" \
    python3 - "$TMP/load.json" "$TMP/pods.log" <<'PY'
import json, sys
run = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
pods = {}
for line in open(sys.argv[2]):
    fields = line.split()
    if len(fields) == 4 and fields[2] == "Running":
        pods.setdefault(fields[1], fields[3])
workers = run["per_worker"]
print(f"tasks {run['tasks']}, lost {run['lost']}, failed {run['failed']}, duplicates {run['duplicates']}, "
      f"wall {run['wall_s']:.1f} s; {len(workers)} pods ran them: {workers}")
assert run["tasks"] == 300 and sum(workers.values()) == 300, "not every result arrived"
assert run["lost"] == 0 and run["failed"] == 0 and run["duplicates"] == 0
unknown = [w for w in workers if w not in pods]
assert not unknown, f"results name no Running worker pod: {unknown}"
assert all(node == "warren-node" for node in pods.values()), pods
assert len(workers) > 2, "the workers did not scale up"
PY
  sed -n 1p "$TMP/check.log" | sed 's/^/    /'
  local peak
  peak=$(awk '$3 == "Running" {n[$1]++} END {m = 0; for (t in n) if (n[t] > m) m = n[t]; print m}' "$TMP/pods.log")
  log "peak: $peak worker pods Running at once"
  t0=$(date +%s)
  if wait_for "worker pods gone" 120 no_workers; then
    pass "scaled back to zero worker pods $(elapsed "$t0") after the load (peak $peak Running)"
  else
    fail "worker pods still there 120 s after the load"
  fi
  kill "$WATCH_PID" 2>/dev/null
  WATCH_PID=""
}

# ---- 3. termination through the kubelet ---------------------------------------------

ready_workers_a() { [[ "$(kn get deploy worker-a -o jsonpath='{.status.readyReplicas}')" == 1 ]]; }
the_worker_a() { kn get pods -l "warren.dev/worker=worker-a" --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name}'; }
holding() { [[ "$(queue_stat queue_a messages_unacknowledged "$FRESH_TOTALS")" == 1 ]]; }
# The statistics (where redeliveries are counted) have caught up with the task's ack.
acked_past() { (($(queue_stat queue_a message_stats.ack) > $1)); } # acks-before

# Sends one task of SECONDS, deletes the pod that runs it with GRACE (kubectl's
# --grace-period; "" = the pod's own), and prints "victim worker redeliveries".
delete_while_running() { # seconds grace-period
  wait_for "worker-a Ready" "$TIMEOUT" ready_workers_a || return 1
  local victim before acks
  victim=$(the_worker_a)
  before=$(queue_stat queue_a message_stats.redeliver)
  acks=$(queue_stat queue_a message_stats.ack)
  "$DISPATCHER" send --task task_a --kwargs "{\"seconds\": $1}" --timeout 120s >"$TMP/send.json" 2>&1 &
  local sender=$!
  wait_for "$victim holds the task" 30 holding || return 1
  kn delete pod "$victim" --wait=false ${2:+--grace-period="$2"} >/dev/null
  wait "$sender" || { cat "$TMP/send.json"; return 1; }
  wait_for "the task's ack in the broker's statistics" 30 acked_past "$acks"
  local worker
  worker=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read())["worker"])' "$TMP/send.json")
  echo "$victim $worker $(($(queue_stat queue_a message_stats.redeliver) - before))"
}

check_grace_periods() {
  say "3. termination through the kubelet (worker --grace-period ${GRACE}s, pod ${GRACE}+5s)"
  kn annotate taskqueue worker-a warren.dev/paused=true --overwrite >/dev/null
  kn scale deploy worker-a --replicas=1 >/dev/null
  local victim worker redelivered
  if read -r victim worker redelivered < <(delete_while_running 2 ""); then
    check "a 2 s task on a deleted pod is finished and acked by it ($victim ran it, $redelivered redelivered)" \
      test "$worker" == "$victim" -a "$redelivered" == 0
  else
    fail "2 s task on a deleted pod: no result"
  fi
  if read -r victim worker redelivered < <(delete_while_running 20 2); then
    check "a 20 s task outlasting a 2 s grace period: killed with $victim, redelivered ($redelivered) to $worker, not lost" \
      test "$worker" != "$victim" -a "$redelivered" -ge 1
  else
    fail "20 s task on a killed pod: no result"
  fi
}

# ---- 5. inside the images ------------------------------------------------------------

uid_of() { # process name -> uids of its processes on this machine (containers share the pid view)
  ps -C "$1" -o uid= | sort -u | tr -d ' '
}
non_root() { [[ "$(uid_of warren-operator)" == 65532 && "$(uid_of warren-worker)" == 65532 ]]; }
consumer_of_queue_a_is() { # pod: warren's worker uses its name as the consumer tag
  mgmt "/api/consumers/%2f" | grep -q "\"consumer_tag\":\"$1\""
}

check_images() {
  say "5. inside the images (worker-a still paused at 1 replica)"
  wait_for "worker-a Ready" "$TIMEOUT" ready_workers_a
  local pod
  pod=$(the_worker_a)
  check "the operator and worker processes run as uid 65532" non_root
  check "warren-operator --help inside its image" kn exec deploy/"$RELEASE" -- /usr/local/bin/warren-operator --help
  check "warren-worker --help inside its image" kn exec "$pod" -- /usr/local/bin/warren-worker --help
  check "the worker resolved the Service name rabbitmq and consumes as $pod" \
    wait_for "consumer $pod" 30 consumer_of_queue_a_is "$pod"
  # Paused since step 3; the operator takes worker-a back.
  kn annotate taskqueue worker-a warren.dev/paused- >/dev/null
}

# ---- 6. Pod Security ------------------------------------------------------------------

check_pod_security() {
  say "6. Pod Security Standard restricted in $NS"
  # Admitted, and Ready (again: a leader that cannot renew its Lease in time exits
  # and restarts by design, so readiness is waited for, and restarts are shown).
  check "the chart's pods were admitted (operator and workers ran above)" \
    wait_for "operator Ready" "$TIMEOUT" operator_ready
  log "operator restarts: $(kn get pods -l app.kubernetes.io/component=operator \
    -o jsonpath='{.items[*].status.containerStatuses[0].restartCount}')"
  local out
  out=$(kn run e2e-root --image="$(bash "$HERE/images.sh" ref pause)" --restart=Never \
    --overrides='{"spec":{"securityContext":{"runAsUser":0}}}' --dry-run=server -o name 2>&1)
  if grep -q "violates PodSecurity" <<<"$out"; then
    pass "a pod running as root is refused: ${out:0:120}..."
  else
    fail "a root pod was not refused: $out"
  fi
}

# ---- 7. the kustomize overlay -----------------------------------------------------------

OVERLAY="$WARREN_ROOT/deploy/kustomize/overlays/local"
KNS=warren-system
overlay_ready() {
  [[ "$(k -n "$KNS" get deploy warren -o jsonpath='{.status.readyReplicas}')" == 1 ]] &&
    [[ "$(k -n "$KNS" get taskqueue worker-a -o jsonpath='{.status.conditions[?(@.type=="BrokerReachable")].status}')" == True ]]
}

check_kustomize() {
  say "7. kubectl apply -k deploy/kustomize/overlays/local"
  helm --kubeconfig="$WARREN_KUBECONFIG" uninstall "$RELEASE" -n "$NS" --wait >/dev/null 2>&1
  check "the overlay applies" k apply --server-side --force-conflicts -k "$OVERLAY"
  check "its operator is Ready on the real node and reads the broker" \
    wait_for "overlay operator" "$TIMEOUT" overlay_ready
  # Not `delete -k`: that would delete the CRD, and every TaskQueue with it.
  k delete namespace "$KNS" --wait=false >/dev/null 2>&1
  k delete clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding \
    -l app.kubernetes.io/instance=warren >/dev/null 2>&1
}
