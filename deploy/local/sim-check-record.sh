#!/usr/bin/env bash
# make sim-check-record: a real autoscaling run, recorded so that the operator's
# simulator (`warren-operator simulate`) can be checked against it. The demo's
# scenario as a user meets it (demo-autoscale.sh): `helm install` of charts/warren
# with the seed's two worker Deployments (charts/warren/examples/seed.yaml: 0..6
# replicas, 10 tasks per replica) on the local cluster's real node; once the operator
# has scaled both to zero, an open-loop load above what 6 workers per queue can do
# (SIM_CHECK_RATE tasks/s, 24, for SIM_CHECK_DURATION, 45s, of SIM_CHECK_MIN_S..MAX_S
# seconds each, 0.5..1.0), so the workers scale up to their cap, the backlog grows,
# drains, and the workers go back to zero. While it runs sim_check_sample.py samples
# every 0.5 s; sim_check_report.py puts it all on the load test's clock (t_s 0 = its
# start) in docs/bench-results/sim-check/ (SIM_CHECK_OUT):
#   arrivals.csv     t_s,queue,task,duration_s: what arrived when (load-test --trace-out)
#   real.csv         t_s,queue,spec_replicas,ready_pods,ready,unacked: what the operator
#                    and the pods did, and the queue's counts
#   taskqueues.yaml  the TaskQueues as applied (spec)
#   values.yaml      the chart values of the workers (SIM_CHECK_SEED, the seed's by
#                    default; charts/warren/examples/seed-drain.yaml has drain targets)
#   startup.json     pod start-up delays (creation -> Ready), per pod and count/min/p50/max;
#                    per queue: peak replicas, drained, back to zero; date, commit, load
# The outputs are replaced only by a run that got that far. Expects RabbitMQ up (make
# rabbitmq-up); brings the local cluster up if it is down and takes it down again after.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
LOG_TAG=sim-check
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=local-release.sh
. "$HERE/local-release.sh"
bin="$WARREN_ROOT/target/$(uname -m)-unknown-linux-musl/release"
logs="$WARREN_ROOT/.local/sim-check"
out="${SIM_CHECK_OUT:-$WARREN_ROOT/docs/bench-results/sim-check}"
seed="${SIM_CHECK_SEED:-$WARREN_ROOT/charts/warren/examples/seed.yaml}"
[[ -f "$seed" ]] || die "SIM_CHECK_SEED: no such file: $seed"
NS=warren-sim-check
INTERVAL=0.5
load=(load-test --rate "${SIM_CHECK_RATE:-24}" --duration "${SIM_CHECK_DURATION:-45s}"
  --min-seconds "${SIM_CHECK_MIN_S:-0.5}" --max-seconds "${SIM_CHECK_MAX_S:-1.0}"
  --timeout 300s --workers 6 --json --trace-out "$logs/arrivals.csv")
rm -rf "$logs"
mkdir -p "$logs"
k() { kubectl --kubeconfig="$WARREN_KUBECONFIG" --request-timeout=20s "$@"; }
kn() { k -n "$NS" "$@"; }
helm_() { helm --kubeconfig="$WARREN_KUBECONFIG" "$@"; }
recording_start=$SECONDS

started_cluster=false
if ! bash "$HERE/cluster.sh" status 2>/dev/null | grep -q '^cluster: up'; then
  say "starting the local cluster with its real node"
  bash "$HERE/cluster.sh" up >"$logs/cluster-up.log" 2>&1 || die "cluster up failed: $logs/cluster-up.log"
  started_cluster=true
fi
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  helm_ uninstall warren -n "$NS" >/dev/null 2>&1 || true
  k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  if $started_cluster; then bash "$HERE/cluster.sh" down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# The commit the images are built from; "-dirty" when the working tree's sources
# differed from it before or after the build.
sources=(Cargo.toml Cargo.lock protocol process worker dispatcher operator charts)
sources_match() { # commit: the working tree's sources are that commit's
  git -C "$WARREN_ROOT" diff --quiet "$1" -- "${sources[@]}" &&
    [[ -z "$(git -C "$WARREN_ROOT" ls-files --others --exclude-standard -- "${sources[@]}")" ]]
}
commit="$(git -C "$WARREN_ROOT" rev-parse HEAD)"
sources_match "$commit" || commit+="-dirty"
say "images, and helm install warren charts/warren -n $NS -f ${seed#"$WARREN_ROOT"/}"
fresh_images "$logs/images.log"
if [[ "$commit" != *-dirty ]] && ! sources_match "$commit"; then commit+="-dirty"; fi
install_seed "$NS" "$logs" "$seed"

# The Deployments start at 1 replica; the run starts from the operator's own zero.
worker_replicas() { kn get deploy -l app.kubernetes.io/component=worker -o jsonpath='{.items[*].spec.replicas}'; }
no_workers() {
  [[ "$(worker_replicas)" =~ ^0(\ 0)*$ ]] && [[ -z "$(kn get pods -l app.kubernetes.io/component=worker -o name)" ]]
}
say "waiting for the operator to scale the idle workers to zero"
wait_for "worker Deployments at 0 replicas, no worker pods" 120 no_workers || die "the workers did not go to zero"
kn get tq -o json >"$logs/taskqueues.json"

start_sampler "$NS" "$logs" "$INTERVAL"

status_line() { # seconds since the load's start -> one line from the latest samples
  tail -n 2 "$logs/samples.csv" | awk -F, -v t="$1" '
    {line = line sprintf("  %s: replicas %s ready pods %s waiting %s unacked %s", $2, $3, $4, $5, $6)}
    END {printf "%4ss%s\n", t, line}'
}
say "load: warren-dispatcher ${load[*]/#$logs\//}"
"$bin/warren-dispatcher" "${load[@]}" >"$logs/load-test.json" 2>"$logs/load-test.log" &
load_pid=$!
pids+=("$load_pid")
load_start=$SECONDS
load_done=false
next_status=0
while :; do
  t=$((SECONDS - load_start))
  if ((t >= next_status)); then
    status_line "$t"
    next_status=$((t + 5))
  fi
  if ! $load_done && ! kill -0 "$load_pid" 2>/dev/null; then
    wait "$load_pid" || die "the load test failed: $(tail -3 "$logs/load-test.log")"
    load_done=true
    log "load test finished after ${t}s; waiting for the workers to go back to zero"
  fi
  if $load_done && no_workers; then break; fi
  if ((t > 400)); then die "the workers were not back at zero within 400 s (logs: $logs)"; fi
  sleep 1
done
sleep 2 # a few samples of the settled state
touch "$logs/stop"
wait "$sampler" || die "the sampler failed: $logs/sampler.log"
kn get events.events.k8s.io -o json >"$logs/events.json" 2>/dev/null || true

say "writing $out"
mkdir -p "$out"
cp "$logs/arrivals.csv" "$out/arrivals.csv"
cp "$seed" "$out/values.yaml"
python3 "$HERE/sim_check_report.py" --dir "$logs" --out "$out" --namespace "$NS" \
  --load-command "warren-dispatcher ${load[*]/#$logs\//}" \
  --commit "$commit" \
  --interval "$INTERVAL" --recording-s "$((SECONDS - recording_start))"
echo "Logs (images, values, load test, raw samples, pod watch, events): $logs/"
