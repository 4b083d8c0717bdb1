#!/usr/bin/env bash
# The operator's part of the demo: TaskQueues scale worker Deployments on the local
# cluster while a load test runs, and pods come and go.
#
# kwok's nodes run no containers, so this script stands in for the kubelet: for each
# Running pod of a worker Deployment it starts a real warren-worker process named
# after the pod, and it sends SIGTERM (a graceful drain) when the pod goes away. The
# operator runs here too (release binary, the admin kubeconfig); in a real cluster it
# is `helm install warren charts/warren`.
# Expects RabbitMQ up and release binaries (make rabbitmq-up build); brings the local
# cluster up if it is down, and takes it down again at the end in that case.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
LOG_TAG=demo-autoscale
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bin="$WARREN_ROOT/target/release"
logs="$WARREN_ROOT/.local/demo"
NS=warren-demo
MGMT="$WARREN_MANAGEMENT_URL"
TASKS="${DEMO_TASKS:-300}"
mkdir -p "$logs"
k() { kubectl --kubeconfig="$WARREN_KUBECONFIG" --request-timeout=20s "$@"; }

started_cluster=false
if ! bash "$HERE/cluster.sh" status 2>/dev/null | grep -q '^cluster: up'; then
  say "starting the local cluster (the first run builds it: ~17 min, then cached)"
  bash "$HERE/cluster.sh" up >"$logs/cluster-up.log" 2>&1 || { cat "$logs/cluster-up.log"; exit 1; }
  started_cluster=true
fi

declare -A workers=() # pod name -> worker pid
operator_pid=""
cleanup() {
  for pid in "${workers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  [[ -n "$operator_pid" ]] && { kill "$operator_pid" 2>/dev/null || true; }
  wait 2>/dev/null || true
  k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  if $started_cluster; then bash "$HERE/cluster.sh" down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

k delete namespace "$NS" --ignore-not-found --wait --timeout=60s >/dev/null
k apply --server-side -f "$WARREN_ROOT/deploy/crd/taskqueue.yaml" >/dev/null
k wait --for=condition=Established crd/taskqueues.warren.dev --timeout=30s >/dev/null
k create namespace "$NS" >/dev/null
for q in a b; do
  k -n "$NS" create deployment "worker-$q" --image=warren-worker:demo --replicas=0 >/dev/null
  cat <<YAML | k -n "$NS" apply -f - >/dev/null
apiVersion: warren.dev/v1alpha1
kind: TaskQueue
metadata: {name: queue-$q}
spec:
  queue: queue_$q
  scaleTargetRef: {name: worker-$q}
  minReplicas: 0
  maxReplicas: 6
  targetBacklogPerReplica: 10
  pollInterval: 1s
  scaleDown: {stabilizationWindow: 5s, scaleToZeroDelay: 10s}
YAML
done
say "TaskQueues applied (queue_a -> worker-a, queue_b -> worker-b; 0..6 replicas, 10 tasks per replica)"
k -n "$NS" get tq

KUBECONFIG="$WARREN_KUBECONFIG" RUST_LOG=info "$bin/warren-operator" run --namespace "$NS" \
  --management-url "$MGMT" --metrics-addr 127.0.0.1:0 >"$logs/operator.log" 2>&1 &
operator_pid=$!

# The kubelet stand-in: one worker process per Running pod, SIGTERM when it goes.
sync_workers() {
  local running pod queue
  # Running and not being deleted.
  running=$(k -n "$NS" get pods --field-selector=status.phase=Running --no-headers \
    -o custom-columns=NAME:.metadata.name,APP:.metadata.labels.app,DELETING:.metadata.deletionTimestamp 2>/dev/null) || return 0
  declare -A seen=()
  while read -r pod app deleting; do
    [[ -z "$pod" || "$deleting" != "<none>" ]] && continue
    seen[$pod]=1
    if [[ -z "${workers[$pod]:-}" ]]; then
      queue="queue_${app#worker-}"
      "$bin/warren-worker" --queue "$queue" --name "$pod" --listen off >"$logs/$pod.log" 2>&1 &
      workers[$pod]=$!
    fi
  done <<<"$running"
  for pod in "${!workers[@]}"; do
    if [[ -z "${seen[$pod]:-}" ]]; then
      kill -TERM "${workers[$pod]}" 2>/dev/null || true
      unset "workers[$pod]"
    fi
  done
}

status_line() { # elapsed
  local tq pods
  tq=$(k -n "$NS" get tq -o jsonpath='{range .items[*]}{.spec.queue}: backlog {.status.backlog} desired {.status.desiredReplicas}   {end}' 2>/dev/null || true)
  pods=$(k -n "$NS" get pods --no-headers 2>/dev/null | awk '{print $3}' | sort | uniq -c | awk '{printf "%s %s  ", $1, $2}')
  printf '%4ss  %s| pods: %s| worker processes: %d\n' "$1" "$tq" "${pods:-none  }" "${#workers[@]}"
}

echo
say "load test: $TASKS tasks (0.1-0.2 s each), half to each queue; watch the operator scale"
# Measured against the most the TaskQueues allow: 6 workers per queue (maxReplicas).
"$bin/warren-dispatcher" load-test --tasks "$TASKS" --timeout 180s --workers 6 \
  >"$logs/load-test.txt" 2>&1 &
load_pid=$!
start=$SECONDS
last=-1
load_done=false
idle_since=""
while :; do
  sync_workers
  elapsed=$((SECONDS - start))
  if ((elapsed != last)); then status_line "$elapsed"; last=$elapsed; fi
  if ! $load_done && ! kill -0 "$load_pid" 2>/dev/null; then
    load_done=true
    wait "$load_pid" || { echo "load test failed:"; cat "$logs/load-test.txt"; exit 1; }
    echo "     -- load test finished; the TaskQueues scale to zero after 10 s idle"
  fi
  if $load_done && [[ -z "$(k -n "$NS" get pods --no-headers 2>/dev/null)" ]] && ((${#workers[@]} == 0)); then
    [[ -n "$idle_since" ]] || idle_since=$SECONDS
    ((SECONDS - idle_since >= 1)) && break
  fi
  if ((elapsed > 240)); then echo "demo did not settle within 240 s; logs in $logs" >&2; exit 1; fi
  sleep 0.5
done

echo
say "the load-test table (per worker = per pod; the run starts from zero workers, so"
echo "   its wall time includes the scale-up and 'ideal' assumes all 12 from the first second)"
cat "$logs/load-test.txt"
echo
say "kubectl get tq; kubectl describe's Events"
k -n "$NS" get tq
k -n "$NS" get events.events.k8s.io --sort-by=.metadata.creationTimestamp \
  -o custom-columns=TASKQUEUE:.regarding.name,REASON:.reason,NOTE:.note | grep -E "TASKQUEUE|Scaled"
echo
echo "Logs (operator, one per pod's worker, load test): $logs/"
