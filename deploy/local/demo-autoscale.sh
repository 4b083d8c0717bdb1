#!/usr/bin/env bash
# The operator's part of the demo, as a user meets it: `helm install` of charts/warren
# with the seed's two worker Deployments (charts/warren/examples/seed.yaml) on the
# local cluster's real node (kubelet + containerd: real containers from the images
# `make images` builds), a 300-task load test, and the worker pods coming and going
# in `kubectl get pods` as the operator scales them up and back to zero. While the load
# runs, sim_check_sample.py reads the queues and the Deployments every 0.5 s, and
# demo_timeline.py draws what it read: docs/demo/timeline.svg (and timeline.csv beside
# it; DEMO_OUT puts them elsewhere).
# Expects RabbitMQ up (make rabbitmq-up); brings the local cluster up if it is down,
# and takes it down again at the end in that case.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
LOG_TAG=demo-autoscale
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=local-release.sh
. "$HERE/local-release.sh"
# The dispatcher runs here, from the same static build as the images.
bin="$WARREN_ROOT/target/$(uname -m)-unknown-linux-musl/release"
logs="$WARREN_ROOT/.local/demo"
out="${DEMO_OUT:-$WARREN_ROOT/docs/demo}"
NS=warren-demo
TASKS="${DEMO_TASKS:-300}"
mkdir -p "$logs"
k() { kubectl --kubeconfig="$WARREN_KUBECONFIG" --request-timeout=20s "$@"; }
kn() { k -n "$NS" "$@"; }
helm_() { helm --kubeconfig="$WARREN_KUBECONFIG" "$@"; }

pids=()
started_cluster=false
if ! bash "$HERE/cluster.sh" status 2>/dev/null | grep -q '^cluster: up'; then
  say "starting the local cluster with its real node (the first run builds it: ~20 min, then cached)"
  bash "$HERE/cluster.sh" up >"$logs/cluster-up.log" 2>&1 || {
    cat "$logs/cluster-up.log"
    exit 1
  }
  started_cluster=true
fi
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  helm_ uninstall warren -n "$NS" >/dev/null 2>&1 || true
  k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  if $started_cluster; then bash "$HERE/cluster.sh" down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

say "images: static binaries FROM scratch, built with buildah and imported into the node"
fresh_images "$logs/images.log"
say "helm install warren charts/warren -n $NS -f charts/warren/examples/seed.yaml"
install_seed "$NS" "$logs"
kn get pods -o wide
kn get tq

status_line() { # elapsed
  local tq pods
  tq=$(kn get tq -o jsonpath='{range .items[*]}{.spec.queue}: backlog {.status.backlog} desired {.status.desiredReplicas}   {end}' 2>/dev/null || true)
  pods=$(kn get pods -l app.kubernetes.io/component=worker --no-headers 2>/dev/null |
    awk '{print $3}' | sort | uniq -c | awk '{printf "%s %s  ", $1, $2}')
  printf '%4ss  %s| worker pods: %s\n' "$1" "$tq" "${pods:-none}"
}
worker_pods() { kn get pods -l app.kubernetes.io/component=worker --no-headers 2>/dev/null; }

echo
say "load test: $TASKS tasks (0.1-0.2 s each), half to each queue; watch the operator scale"
rm -f "$logs/samples.csv" "$logs/pods.jsonl"
start_sampler "$NS" "$logs" 0.5
load_start_unix=$(date +%s.%N)
# Measured against the most the TaskQueues allow: 6 workers per queue (maxReplicas).
"$bin/warren-dispatcher" load-test --tasks "$TASKS" --timeout 180s --workers 6 \
  >"$logs/load-test.txt" 2>&1 &
load_pid=$!
start=$SECONDS
load_done=false
while :; do
  elapsed=$((SECONDS - start))
  status_line "$elapsed"
  if ! $load_done && ! kill -0 "$load_pid" 2>/dev/null; then
    load_done=true
    wait "$load_pid" || {
      echo "load test failed:"
      cat "$logs/load-test.txt"
      exit 1
    }
    echo "     -- load test finished; kubectl get pods:"
    kn get pods -l app.kubernetes.io/component=worker -o wide | sed 's/^/     /'
    echo "     -- the TaskQueues scale to zero after 10 s idle"
  fi
  if $load_done && [[ -z "$(worker_pods)" ]]; then break; fi
  if ((elapsed > 240)); then
    echo "demo did not settle within 240 s; logs in $logs" >&2
    exit 1
  fi
  sleep 1
done
echo "     -- kubectl get pods: $(kn get pods -l app.kubernetes.io/component=worker 2>&1)"
touch "$logs/stop"
wait "$sampler" || die "the sampler failed: $logs/sampler.log"
python3 "$HERE/demo_timeline.py" --samples "$logs/samples.csv" --start "$load_start_unix" --out "$out" \
  --subtitle "$TASKS tasks of 0.1-0.2 s, half to each queue; the seed's TaskQueues (charts/warren/examples/seed.yaml); $(date -u +%F), $(git -C "$WARREN_ROOT" rev-parse --short HEAD)" ||
  die "cannot draw the timeline from $logs/samples.csv"

echo
say "the load-test table (per worker = per pod; the run starts from one worker per queue,"
echo "   so its wall time includes the scale-up and 'ideal' assumes all 12 from the first second)"
cat "$logs/load-test.txt"
echo
say "kubectl get tq; kubectl describe's Events"
kn get tq
kn get events.events.k8s.io --sort-by=.metadata.creationTimestamp \
  -o custom-columns=TASKQUEUE:.regarding.name,REASON:.reason,NOTE:.note | awk 'NR == 1 || $2 == "Scaled"'
echo
say "the scaling timeline: $out/timeline.svg (the samples: $out/timeline.csv)"
echo "Logs (images, values, load test, samples): $logs/"
