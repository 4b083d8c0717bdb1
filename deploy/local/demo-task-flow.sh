#!/usr/bin/env bash
# The seed's scenario on warren, without Kubernetes: queue_a and queue_b, first one
# worker per queue, then three, each time the load-test table (20/50/100 tasks of
# 0.1-0.2 s) with concurrent collection, and once the seed's sequential collection.
# Expects RabbitMQ up (make rabbitmq-up) and release binaries (make build).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin="$root/target/release"
logs="$root/.local/demo"
mkdir -p "$logs"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_worker() { # queue name
  "$bin/warren-worker" --queue "$1" --name "$2" --listen off >"$logs/$2.log" 2>&1 &
  pids+=($!)
}

wait_consumers() { # queue count
  for _ in $(seq 1 100); do
    n=$(curl -fsS -u guest:guest "http://127.0.0.1:15672/api/queues/%2f/$1" 2>/dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("consumers", 0))' 2>/dev/null || echo 0)
    [ "$n" -ge "$2" ] && return 0
    sleep 0.2
  done
  echo "queue $1 did not reach $2 consumers" >&2; return 1
}

echo "== 1 worker per queue (worker-a-1, worker-b-1), concurrent collection"
start_worker queue_a worker-a-1; start_worker queue_b worker-b-1
wait_consumers queue_a 1; wait_consumers queue_b 1
"$bin/warren-dispatcher" load-test --tasks 20,50,100

echo
echo "== the seed's bottleneck: one blocking result at a time (--collect sequential)"
"$bin/warren-dispatcher" load-test --tasks 20 --collect sequential

echo
echo "== 3 workers per queue, concurrent collection"
for i in 2 3; do start_worker queue_a "worker-a-$i"; start_worker queue_b "worker-b-$i"; done
wait_consumers queue_a 3; wait_consumers queue_b 3
"$bin/warren-dispatcher" load-test --tasks 20,50,100
echo
echo "Worker logs: $logs/"
