#!/usr/bin/env bash
# The seed's scenario on warren, without Kubernetes: queue_a and queue_b, first one
# worker per queue, then three, each time the load-test table (20/50/100 tasks of
# 0.1-0.2 s) with concurrent collection, and once the seed's sequential collection.
# Expects RabbitMQ up (make rabbitmq-up) and release binaries (make build).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
LOG_TAG=demo
# shellcheck source=lib.sh
. "$here/lib.sh"
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

has_consumers() { [ "$(queue_consumers "$1")" -ge "$2" ]; } # queue count

wait_consumers() { # queue count
  wait_for "$2 consumer(s) on $1" 20 has_consumers "$1" "$2"
}

say "1 worker per queue (worker-a-1, worker-b-1), concurrent collection"
start_worker queue_a worker-a-1; start_worker queue_b worker-b-1
wait_consumers queue_a 1; wait_consumers queue_b 1
"$bin/warren-dispatcher" load-test --tasks 20,50,100 --workers 1

echo
say "the seed's bottleneck: one blocking result at a time (--collect sequential)"
"$bin/warren-dispatcher" load-test --tasks 20 --collect sequential --workers 1

echo
say "3 workers per queue, concurrent collection"
for i in 2 3; do start_worker queue_a "worker-a-$i"; start_worker queue_b "worker-b-$i"; done
wait_consumers queue_a 3; wait_consumers queue_b 3
"$bin/warren-dispatcher" load-test --tasks 20,50,100 --workers 3
echo
echo "Worker logs: $logs/"
