#!/usr/bin/env bash
# Scale-down benchmark, IdleFirst against Any on the same plan: the chart on the
# local cluster's real node, then test-e2e step 4's plan (3 short and 3 long tasks
# on 6 worker pods, a scale-down while the 3 newest pods are busy) BENCH_SCALE_DOWN_REPS
# times per policy, alternating. Writes docs/bench-results/scale-down.json: per run,
# tasks interrupted (redelivered), duplicates, task-seconds wasted, the delay from the
# last short task's result to the scale-down; and the operator's consumer reads
# (requests, latency) next to them; and scale-down.svg beside it, the first run of each
# policy drawn by scale_down_chart.py. Expects the cluster up (make bench does it).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
LOG_TAG=bench-scale-down
# shellcheck source=lib.sh
. "$HERE/lib.sh"

NS="warren-bench"
RELEASE="warren"
DISPATCHER="${WARREN_DISPATCHER_BIN:-$WARREN_ROOT/target/$(uname -m)-unknown-linux-musl/release/warren-dispatcher}"
TIMEOUT="${WARREN_TEST_TIMEOUT:-120}"
GRACE=5
REPS="${BENCH_SCALE_DOWN_REPS:-3}"
OUT="${BENCH_RESULTS:-$WARREN_ROOT/docs/bench-results}/scale-down.json"
TMP="$(mktemp -d)"

k() { kubectl --kubeconfig="$WARREN_KUBECONFIG" --request-timeout=20s "$@"; }
kn() { k -n "$NS" "$@"; }
cleanup() {
  helm --kubeconfig="$WARREN_KUBECONFIG" uninstall "$RELEASE" -n "$NS" >/dev/null 2>&1
  k delete namespace "$NS" --wait=false >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

# shellcheck source=test-e2e-steps.sh
. "$HERE/test-e2e-steps.sh"
# shellcheck source=test-e2e-idle-first.sh
. "$HERE/test-e2e-idle-first.sh"

install_release
wait_for "operator Ready" "$TIMEOUT" operator_ready || die "the operator is not Ready"
records="$TMP/records.jsonl"
: >"$records"
metrics_before=$(operator_metrics_json)
for ((rep = 1; rep <= REPS; rep++)); do
  for policy in IdleFirst Any; do
    name="long-${policy,,}"
    t0=$(date +%s)
    if scale_down_run "$policy" >"$TMP/record.json"; then
      cat "$TMP/record.json" >>"$records"
      log "run $rep $policy ($(elapsed "$t0")): $(cat "$TMP/record.json")"
    else
      log "run $rep $policy did not complete"
    fi
    kn delete taskqueue "$name" --wait=false >/dev/null 2>&1
    kn delete deploy "$name" --wait=true --timeout=60s >/dev/null 2>&1
  done
done
python3 "$HERE/idle_first_bench.py" --records "$records" --reps "$REPS" \
  --metrics-before "$metrics_before" --metrics-after "$(operator_metrics_json)" >"$OUT" ||
  die "cannot summarise the runs"
log "wrote $OUT"
python3 "$HERE/scale_down_chart.py" --results "$OUT" --out "${OUT%.json}.svg" ||
  die "cannot draw the runs from $OUT"
log "wrote ${OUT%.json}.svg"
summary
