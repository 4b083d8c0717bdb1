# shellcheck shell=bash
# Step 8 of test-e2e.sh (sourced by it; uses its k, kn, check, NS, TMP, RELEASE,
# DISPATCHER, TIMEOUT and step 1's lease_holder): the leader operator's pod deleted
# during a burst. With two operator replicas the standby must take the Lease (the
# deleted leader releases it on SIGTERM, so within the standby's retry interval, a
# third of leaseDuration), every task of the burst must be answered, and the new
# leader must go on scaling: its own Scaled Events, and the workers back to zero.

operator_ready_n() { [[ "$(kn get deploy "$RELEASE" -o jsonpath='{.status.readyReplicas}')" == "$1" ]]; }
held_by_another() { # pod
  local holder
  holder=$(lease_holder)
  [[ -n "$holder" && "$holder" != "$1" ]]
}
worker_replicas() { kn get deploy "$1" -o jsonpath='{.spec.replicas}'; }
scaling_up() { (($(worker_replicas worker-a) + $(worker_replicas worker-b) >= 3)); }
scaled_by() { # pod: a Scaled Event it reported
  kn get events.events.k8s.io \
    -o jsonpath='{range .items[?(@.reason=="Scaled")]}{.reportingInstance}{"\n"}{end}' | grep -qx "$1"
}
workers_at_zero() { [[ "$(worker_replicas worker-a)$(worker_replicas worker-b)" == 00 ]]; }
operator_replicas() { # n
  helm --kubeconfig="$WARREN_KUBECONFIG" upgrade "$RELEASE" "$WARREN_ROOT/charts/warren" -n "$NS" \
    --reuse-values --set replicaCount="$1" >/dev/null
}

check_leader_handover() {
  say "8. the leader's pod deleted during a burst (2 operator replicas)"
  check "helm upgrade --set replicaCount=2" operator_replicas 2
  if ! wait_for "2 operator pods Ready" "$TIMEOUT" operator_ready_n 2; then
    fail "two operator pods not Ready within ${TIMEOUT}s"
    return
  fi
  local leader standby t0 load
  leader=$(lease_holder)
  "$DISPATCHER" load-test --tasks 400 --mix 1:1 --workers 6 --timeout 180s --json \
    >"$TMP/burst.json" 2>"$TMP/burst.err" &
  load=$!
  wait_for "the workers scaling up" 60 scaling_up
  kn delete pod "$leader" --wait=false >/dev/null
  t0=$(date +%s)
  if wait_for "another operator pod holds the Lease" 30 held_by_another "$leader"; then
    standby=$(lease_holder)
    pass "the standby $standby took the Lease $(elapsed "$t0") after the leader's pod $leader was deleted"
  else
    fail "no other operator pod took the Lease within 30 s of deleting $leader"
  fi
  wait "$load"
  check "400 tasks through the handover: none lost, failed or duplicated" \
    python3 - "$TMP/burst.json" <<'PY'
import json, sys
run = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"tasks {run['tasks']}, lost {run['lost']}, failed {run['failed']}, duplicates {run['duplicates']}, wall {run['wall_s']:.1f} s")
assert run["tasks"] == 400 and sum(run["per_worker"].values()) == 400, "not every result arrived"
assert run["lost"] == 0 and run["failed"] == 0 and run["duplicates"] == 0
PY
  sed -n 1p "$TMP/check.log" | sed 's/^/    /'
  check "the new leader scales: a Scaled Event reported by ${standby:-the standby}" \
    wait_for "Scaled by ${standby:-the standby}" 120 scaled_by "${standby:-none}"
  check "after the burst it scales the workers back to zero" \
    wait_for "worker-a and worker-b at 0" 120 workers_at_zero
  check "helm upgrade --set replicaCount=1" operator_replicas 1
  wait_for "1 operator pod Ready" "$TIMEOUT" operator_ready_n 1
}
