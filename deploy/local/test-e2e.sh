#!/usr/bin/env bash
# The whole path on real containers: `helm install` of charts/warren with the images
# `make images` builds, on the local cluster's real node (kubelet + containerd), in a
# namespace under the `restricted` Pod Security Standard, with the seed's scenario
# from charts/warren/examples/seed.yaml:
#   1. the operator pod Running and Ready on the real node, leader, reading the broker
#      with its in-cluster ServiceAccount;
#   2. 300 tasks: worker pods for queue_a and queue_b scale up and back to zero,
#      nothing lost, every result names the pod that ran it;
#   3. a pod deleted while it runs a task shorter than its grace period finishes and
#      acks it (no redelivery); one whose task outlasts the grace period is killed by
#      the kubelet and the task is redelivered (counted, never lost);
#   4. a scale-down while long tasks run: IdleFirst removes only idle workers (none
#      of the long tasks is interrupted), Any on the same plan interrupts some
#      (test-e2e-idle-first.sh);
#   5. inside the images: non-root, --help, service names resolve;
#   6. Pod Security: the chart's pods are admitted, a root pod is not;
#   7. the kustomize overlay for the local cluster applies and its operator works;
#   8. (run before 6) the leader operator's pod deleted during a burst: the standby
#      takes the Lease, nothing is lost, the new leader scales (test-e2e-failover.sh).
# Expects the cluster up with its real node and RabbitMQ up (`make test` does both). Prints one line per check, timings, and
# "N passed, N failed"; exits non-zero on a failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
LOG_TAG=test-e2e
# shellcheck source=lib.sh
. "$HERE/lib.sh"

NS="warren-e2e"
RELEASE="warren"
# The load comes from here, from the same static build as the images (install_release
# builds it).
DISPATCHER="${WARREN_DISPATCHER_BIN:-$WARREN_ROOT/target/$(uname -m)-unknown-linux-musl/release/warren-dispatcher}"
TIMEOUT="${WARREN_TEST_TIMEOUT:-120}"
# The worker drains for this long after SIGTERM; the chart gives pods 5 s more.
GRACE=5
TMP="$(mktemp -d)"
WATCH_PID=""

k() { kubectl --kubeconfig="$WARREN_KUBECONFIG" --request-timeout=20s "$@"; }
kn() { k -n "$NS" "$@"; }

cleanup() {
  [[ -n "$WATCH_PID" ]] && kill "$WATCH_PID" 2>/dev/null
  helm --kubeconfig="$WARREN_KUBECONFIG" uninstall "$RELEASE" -n "$NS" >/dev/null 2>&1
  k delete namespace "$NS" --wait=false >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

# shellcheck source=test-e2e-steps.sh
. "$HERE/test-e2e-steps.sh"
# shellcheck source=test-e2e-idle-first.sh
. "$HERE/test-e2e-idle-first.sh"
# shellcheck source=test-e2e-failover.sh
. "$HERE/test-e2e-failover.sh"

# WARREN_E2E_STEPS runs a subset while working on one step, e.g.
#   WARREN_E2E_STEPS="install_release check_idle_first" bash deploy/local/test-e2e.sh
# (make test runs them all).
ALL_STEPS="install_release check_operator check_seed_scenario check_grace_periods check_idle_first
check_images check_leader_handover check_pod_security check_kustomize"
for step in ${WARREN_E2E_STEPS:-$ALL_STEPS}; do
  [[ " ${ALL_STEPS//$'\n'/ } " == *" $step "* ]] || die "unknown step $step (steps: $ALL_STEPS)"
  "$step"
done
summary
