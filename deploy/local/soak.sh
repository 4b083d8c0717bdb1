#!/usr/bin/env bash
# make soak: warren under a long open-loop load on the local cluster's real node, as
# docs/reliability.md reports it. `helm install` of charts/warren with the seed's two
# worker Deployments; for SOAK_MINUTES (30) the dispatcher publishes SOAK_RATE tasks
# a second (20), a burst of SOAK_BURST_TASKS (600) every SOAK_BURST_EVERY seconds
# (300), while a worker pod is killed at random (grace 0) every SOAK_KILL_EVERY
# seconds (60) and the operator scales the workers. Every SOAK_SAMPLE_EVERY seconds
# (15) it samples the operator's, the workers' and RabbitMQ's memory, the operator's
# open files and the broker's connections. Writes docs/bench-results/soak.json
# (soak_report.py); fails when a task was lost or a component's memory grew.
# Not part of `make test` (it takes half an hour).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$HERE/env.sh"
LOG_TAG=soak
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=local-release.sh
. "$HERE/local-release.sh"
bin="$WARREN_ROOT/target/$(uname -m)-unknown-linux-musl/release"
out="$WARREN_ROOT/.local/soak"
NS=warren-soak
MINUTES="${SOAK_MINUTES:-30}"
RATE="${SOAK_RATE:-20}"
BURST_TASKS="${SOAK_BURST_TASKS:-600}"
BURST_EVERY="${SOAK_BURST_EVERY:-300}"
KILL_EVERY="${SOAK_KILL_EVERY:-60}"
SAMPLE_EVERY="${SOAK_SAMPLE_EVERY:-15}"
rm -rf "$out"
mkdir -p "$out"
k() { kubectl --kubeconfig="$WARREN_KUBECONFIG" --request-timeout=20s "$@"; }
kn() { k -n "$NS" "$@"; }
helm_() { helm --kubeconfig="$WARREN_KUBECONFIG" "$@"; }

bash "$HERE/cluster.sh" up >"$out/cluster-up.log" 2>&1 || {
  tail -30 "$out/cluster-up.log"
  die "the local cluster did not come up"
}
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  helm_ uninstall warren -n "$NS" >/dev/null 2>&1 || true
  k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "images, and helm install warren charts/warren -n $NS -f charts/warren/examples/seed.yaml"
fresh_images "$out/images.log"
install_seed "$NS" "$out"

rss_kib() { # pid: resident KiB, 0 when gone
  awk '/^VmRSS:/ {print $2; found=1} END {if (!found) print 0}' "/proc/$1/status" 2>/dev/null || echo 0
}
sample() { # seconds since start -> one CSV row
  local op workers w rss max=0 sum=0 n=0 beam conns fds=0 opk=0 beamk=0
  op=$(pgrep -x warren-operator | head -1 || true)
  if [[ -n "$op" ]]; then
    opk=$(rss_kib "$op")
    fds=$(find "/proc/$op/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  fi
  workers=$(pgrep -x warren-worker || true)
  for w in $workers; do
    rss=$(rss_kib "$w")
    n=$((n + 1))
    sum=$((sum + rss))
    ((rss > max)) && max=$rss
  done
  beam=$(pgrep -x beam.smp | head -1 || true)
  [[ -n "$beam" ]] && beamk=$(rss_kib "$beam")
  conns=$(mgmt "/api/connections?columns=name" 2>/dev/null | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' || echo -1)
  echo "$1,$opk,$fds,$n,$max,$sum,$beamk,$conns"
}

say "load: $RATE tasks/s for $MINUTES min, a burst of $BURST_TASKS every ${BURST_EVERY}s, a worker pod killed every ${KILL_EVERY}s"
echo "t_s,operator_rss_kib,operator_fds,workers,worker_rss_max_kib,worker_rss_sum_kib,rabbitmq_rss_kib,connections" >"$out/samples.csv"
duration=$((MINUTES * 60))
"$bin/warren-dispatcher" load-test --rate "$RATE" --duration "${duration}s" --timeout 300s \
  --min-seconds 0.1 --max-seconds 0.5 --json >"$out/steady.json" 2>"$out/steady.log" &
steady=$!
start=$SECONDS
next_burst=$BURST_EVERY
next_kill=$KILL_EVERY
next_sample=0
bursts=()
kills=0
while kill -0 "$steady" 2>/dev/null; do
  t=$((SECONDS - start))
  if ((t >= next_sample)); then
    sample "$t" >>"$out/samples.csv"
    next_sample=$((next_sample + SAMPLE_EVERY))
  fi
  if ((t >= next_burst && t < duration - 60)); then
    "$bin/warren-dispatcher" load-test --tasks "$BURST_TASKS" --seed "$t" --timeout 300s --json \
      >"$out/burst-$t.json" 2>"$out/burst-$t.log" &
    bursts+=($!)
    log "burst of $BURST_TASKS at ${t}s"
    next_burst=$((next_burst + BURST_EVERY))
  fi
  if ((t >= next_kill)); then
    victim=$(kn get pods -l app.kubernetes.io/component=worker --field-selector=status.phase=Running \
      -o jsonpath='{.items[*].metadata.name}' 2>/dev/null | tr ' ' '\n' | shuf -n 1 || true)
    if [[ -n "$victim" ]]; then
      kn delete pod "$victim" --grace-period=0 --force --wait=false >/dev/null 2>&1 && kills=$((kills + 1))
      log "killed $victim at ${t}s"
    fi
    next_kill=$((next_kill + KILL_EVERY))
  fi
  sleep 1
done
wait "$steady" || { tail -20 "$out/steady.log"; die "the steady load test failed"; }
for pid in "${bursts[@]}"; do wait "$pid" || die "a burst load test failed (logs in $out)"; done
sample "$((SECONDS - start))" >>"$out/samples.csv"
kn get events.events.k8s.io -o json >"$out/events.json" 2>/dev/null || true

python3 "$HERE/soak_report.py" "$out" "$WARREN_ROOT/docs/bench-results/soak.json" \
  --minutes "$MINUTES" --rate "$RATE" --burst-tasks "$BURST_TASKS" --burst-every "$BURST_EVERY" \
  --kill-every "$KILL_EVERY" --kills "$kills"
