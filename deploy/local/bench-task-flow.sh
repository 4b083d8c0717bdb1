#!/usr/bin/env bash
# warren's task flow side by side with Celery, on the same broker and machine, in
# one run; writes docs/benchmarks.md and the raw records in docs/bench-results/.
#
#   1. the seed's table: 20/50/100 tasks of 0.1-0.2 s, mix 1:1 over queue_a/queue_b,
#      one and three workers per queue at concurrency 1, concurrent collection;
#   2. sequential collection (the seed's blocking .get()) next to concurrent;
#   3. tasks that do no work: round trips/s of warren, of Celery and of a bare lapin
#      echo with the same durability settings (the broker's own ceiling), also run
#      with warren's messages (Celery's format) to tell the format's cost apart;
#   4. CPU-bound tasks on 1, 2 and 4 workers (where 2 cores stop the scaling).
#
# Both systems get the same task plan (`warren-dispatcher plan`, seeded), the same
# durability (persistent tasks and results, publisher confirms on every publish)
# and the same broker. Expects RabbitMQ up and release binaries (make rabbitmq-up
# build); builds the echo example and creates the Celery venv if missing.
#
# Knobs (environment): BENCH_REPS (3) runs per concurrent seed cell and per
# no-work measurement; BENCH_NOWORK_TASKS (20000) warren/echo round trips per run;
# BENCH_CELERY_NOWORK_TASKS (2000); BENCH_NOWORK_CONCURRENCY (128) warren-worker
# --concurrency (= prefetch) and the echo's prefetch in the no-work case;
# BENCH_CPU_TASKS (60); BENCH_OUT (docs/benchmarks.md); BENCH_RESULTS (docs/bench-results).
# The management API: WARREN_MANAGEMENT_URL, _USERNAME, _PASSWORD (see lib.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
LOG_TAG=bench
# shellcheck source=lib.sh
. "$here/lib.sh"
report_tool=("python3" "$here/bench_report.py")
bin="$root/target/release"
celery_dir="$root/protocol/celery"
venv="$root/.local/venv-celery"
logs="$root/.local/bench"
results_dir=${BENCH_RESULTS:-$root/docs/bench-results}
out=${BENCH_OUT:-$root/docs/benchmarks.md}
reps=${BENCH_REPS:-3}
nowork_tasks=${BENCH_NOWORK_TASKS:-20000}
celery_nowork_tasks=${BENCH_CELERY_NOWORK_TASKS:-2000}
nowork_concurrency=${BENCH_NOWORK_CONCURRENCY:-128}
nowork_window=1000
cpu_tasks=${BENCH_CPU_TASKS:-60}
export WARREN_AMQP_URL=${WARREN_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

mkdir -p "$logs" "$results_dir"
records="$results_dir/task-flow.jsonl"
meta="$results_dir/task-flow-meta.json"
plans="$logs/plans"
mkdir -p "$plans"
: >"$records"

# --- processes ---------------------------------------------------------------------
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_all() { # SIGTERM every worker started so far, wait for them, forget them
  cleanup
  pids=()
}

warren_worker() { # queue name concurrency
  "$bin/warren-worker" --queue "$1" --name "$2" --concurrency "$3" --listen off \
    >"$logs/$2.log" 2>&1 &
  pids+=($!)
}

celery_worker() { # queue name
  (cd "$celery_dir" && exec "$venv/bin/celery" -A bench_app worker -Q "$1" -c 1 \
    -n "$2@%h" --without-gossip --without-mingle --without-heartbeat -l warning) \
    >"$logs/$2.log" 2>&1 &
  pids+=($!)
}

worker_cpu_ticks() { # user+system CPU ticks of the workers started so far
  local pid total=0 t
  for pid in "${pids[@]}"; do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

consumers_are() { [ "$(queue_consumers "$1")" -eq "$2" ]; } # queue count

wait_consumers() { # queue count: until exactly `count` consumers (stats lag ~1 s)
  wait_for "exactly $2 consumer(s) on $1 (worker logs: $logs/)" 60 consumers_are "$1" "$2"
}

purge() { # queue: drop leftovers of an earlier, interrupted run
  mgmt "/api/queues/%2f/$1/contents" -X DELETE >/dev/null 2>&1 || true
}

# --- records -----------------------------------------------------------------------
# Each measurement is one JSON line in $records, tagged with what produced it.
record() { # json-tags; reads JSON lines on stdin, appends them to $records
  "${report_tool[@]}" record --tags "$1" --records "$records"
}

failures=0
measured() { # command...: runs a measurement; a failure is reported, not fatal
  if ! "$@"; then
    failures=$((failures + 1))
    log "FAILED: $*"
  fi
}

load1() { cut -d' ' -f1 /proc/loadavg; }

plan() { # tasks names-prefix extra-args... -> path of the plan file
  local n=$1 prefix=$2 file
  shift 2
  file="$plans/$prefix-$n$(printf '%s' "$*" | tr -c 'a-z0-9' '_').json"
  if [ "$prefix" = celery ]; then
    "$bin/warren-dispatcher" plan --tasks "$n" --task-a celery_app.task_a \
      --task-b celery_app.task_b "$@" >"$file"
  else
    "$bin/warren-dispatcher" plan --tasks "$n" "$@" >"$file"
  fi
  echo "$file"
}

# --- prerequisites -----------------------------------------------------------------
for b in warren-worker warren-dispatcher; do
  [ -x "$bin/$b" ] || die "missing $bin/$b: run make build"
done
say "building the echo ceiling (dispatcher/examples/echo_ceiling/)"
cargo build --release --locked -q -p warren-dispatcher --example echo_ceiling
echo_bin="$bin/examples/echo_ceiling"
if [ ! -x "$venv/bin/celery" ]; then
  say "creating the Celery venv in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$celery_dir/requirements.txt"
fi
mgmt /api/overview >/dev/null ||
  die "RabbitMQ management API not answering at $WARREN_MANAGEMENT_URL: run make rabbitmq-up"
for q in queue_a queue_b; do
  if [ "$(queue_consumers "$q")" -ne 0 ]; then
    die "$q already has consumers; stop them first (the benchmark starts its own)"
  fi
done

# What started this run, for the report: make sets MAKELEVEL in its recipes.
if [ -n "${MAKELEVEL:-}" ]; then command="make bench"; else command="bash deploy/local/bench-task-flow.sh"; fi
"${report_tool[@]}" meta --out "$meta" --command "$command" --venv "$venv" \
  --celery-dir "$celery_dir" --broker-config "$root/.local/rabbitmq/rabbitmq.conf" \
  --nowork-concurrency "$nowork_concurrency" --nowork-tasks "$nowork_tasks" \
  --nowork-window "$nowork_window" --celery-nowork-tasks "$celery_nowork_tasks" \
  --reps "$reps" --cpu-tasks "$cpu_tasks"

for q in queue_a queue_b; do purge "$q"; done
seed_counts=(20 50 100)
rep_counts=()
for _ in $(seq 1 "$reps"); do rep_counts+=("${seed_counts[@]}"); done
rep_list=$(IFS=,; echo "${rep_counts[*]}")
seed_list=$(IFS=,; echo "${seed_counts[*]}")
for n in "${seed_counts[@]}"; do plan "$n" warren >/dev/null; done
# The CPU runs' plan, for the report (load-test sends the same: same flags, same seed).
"$bin/warren-dispatcher" plan --tasks "$cpu_tasks" --cpu --mix 1:0 >"$plans/warren-cpu.json"
"${report_tool[@]}" plan-summary "$plans"/warren-*.json >&2

# Measurements: each appends its JSON lines to $records; a failure is counted and
# reported, and the benchmark goes on.
warren_load() { # tags load-test-args... (with the run's --workers / --concurrency)
  local tags=$1
  shift
  "$bin/warren-dispatcher" load-test "$@" --json | record "$tags"
}
echo_run() { # tags [--celery-format]
  "$echo_bin" --requests "$nowork_tasks" --window "$nowork_window" --prefetch "$nowork_concurrency" \
    --queues 2 --json "${@:2}" | record "$1"
}
celery_run() { # tags plan-file collect
  (cd "$celery_dir" && "$venv/bin/python" bench_client.py --plan "$2" --collect "$3") \
    | record "$1"
}
tags() { # phase system extra-json-fields
  printf '{"phase":"%s","system":"%s","load1":%s%s}' "$1" "$2" "$(load1)" "${3:+,$3}"
}

# --- 1+2. warren: the seed's table, concurrent and sequential ------------------------
say "warren, 1 worker per queue: concurrent x$reps, then sequential"
warren_worker queue_a worker-a-1 1
warren_worker queue_b worker-b-1 1
wait_consumers queue_a 1; wait_consumers queue_b 1
measured warren_load "$(tags seed warren '"workers_per_queue":1')" --tasks "$rep_list" \
  --workers 1
measured warren_load "$(tags seed warren '"workers_per_queue":1')" --tasks "$seed_list" \
  --collect sequential --workers 1

say "warren, 3 workers per queue: concurrent x$reps"
for i in 2 3; do warren_worker queue_a "worker-a-$i" 1; warren_worker queue_b "worker-b-$i" 1; done
wait_consumers queue_a 3; wait_consumers queue_b 3
measured warren_load "$(tags seed warren '"workers_per_queue":3')" --tasks "$rep_list" \
  --workers 3
stop_all
wait_consumers queue_a 0; wait_consumers queue_b 0

# --- 3. no work: warren and the bare echo, interleaved -----------------------------
say "no work: the lapin echo (prefetch $nowork_concurrency; bare, then in Celery's format) and warren (1 worker per queue, --concurrency $nowork_concurrency), $reps runs each, interleaved"
warren_worker queue_a nowork-a "$nowork_concurrency"
warren_worker queue_b nowork-b "$nowork_concurrency"
wait_consumers queue_a 1; wait_consumers queue_b 1
for run in $(seq 1 "$reps"); do
  measured echo_run "$(tags nowork echo "\"rep\":$run")"
  measured echo_run "$(tags nowork echo-celery-format "\"rep\":$run")" --celery-format
  measured warren_load "$(tags nowork warren "\"rep\":$run,\"concurrency\":$nowork_concurrency")" \
    --no-work --tasks "$nowork_tasks" --window "$nowork_window" \
    --concurrency "$nowork_concurrency"
done
stop_all
wait_consumers queue_a 0; wait_consumers queue_b 0

# --- 4. CPU-bound: 1, 2, 4 workers on one queue ---------------------------------------
for workers in 1 2 4; do
  say "CPU-bound: $cpu_tasks tasks on queue_a, $workers worker(s) at concurrency 1"
  for i in $(seq 1 "$workers"); do warren_worker queue_a "cpu-a-$i" 1; done
  wait_consumers queue_a "$workers"
  cpu_before=$(worker_cpu_ticks)
  measured warren_load "$(tags cpu warren "\"workers\":$workers")" --cpu --mix 1:0 \
    --tasks "$cpu_tasks" --workers "$workers"
  # The CPU time the workers got during the run, added to its record.
  "${report_tool[@]}" cpu-time --records "$records" --workers "$workers" \
    --ticks "$(($(worker_cpu_ticks) - cpu_before))" --hz "$(getconf CLK_TCK)"
  stop_all
  wait_consumers queue_a 0
done

# --- 1+2+3. Celery: the same plans -----------------------------------------------------
say "Celery, 1 worker per queue: concurrent x$reps, then sequential"
celery_worker queue_a worker-a-1
celery_worker queue_b worker-b-1
wait_consumers queue_a 1; wait_consumers queue_b 1
for n in "${rep_counts[@]}"; do
  measured celery_run "$(tags seed celery '"workers_per_queue":1')" "$(plan "$n" celery)" concurrent
done
for n in "${seed_counts[@]}"; do
  measured celery_run "$(tags seed celery '"workers_per_queue":1')" "$(plan "$n" celery)" sequential
done

say "Celery, no work: 1 worker per queue (-c 1), $reps runs of $celery_nowork_tasks"
nowork_plan=$(plan "$celery_nowork_tasks" celery --no-work)
for run in $(seq 1 "$reps"); do
  measured celery_run "$(tags nowork celery "\"rep\":$run")" "$nowork_plan" concurrent
done

say "Celery, 3 workers per queue: concurrent x$reps"
for i in 2 3; do celery_worker queue_a "worker-a-$i"; celery_worker queue_b "worker-b-$i"; done
wait_consumers queue_a 3; wait_consumers queue_b 3
for n in "${rep_counts[@]}"; do
  measured celery_run "$(tags seed celery '"workers_per_queue":3')" "$(plan "$n" celery)" concurrent
done
stop_all

# --- the report --------------------------------------------------------------------------
say "writing ${out#"$root"/}"
"${report_tool[@]}" finish-meta --meta "$meta"
"${report_tool[@]}" report --records "$records" --meta "$meta" \
  --plans "$plans" --failures "$failures" --out "$out"
echo "Report: ${out#"$root"/}; raw records: ${records#"$root"/}; logs: ${logs#"$root"/}/"
[ "$failures" -eq 0 ] || die "$failures measurement(s) failed; see above"
