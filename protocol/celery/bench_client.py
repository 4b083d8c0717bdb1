"""Celery's side of warren's benchmark: send a task plan, collect the results.

The plan is the JSON array `warren-dispatcher plan` prints (name, queue, seconds,
cpu per task), so Celery and warren sleep exactly the same durations in the same
order. Prints one JSON object with the same fields as `warren-dispatcher
load-test --json` where they apply (the ideal and efficiency are left to the
benchmark report, which computes them from the plan for both systems alike).

  --collect concurrent  send every task, then collect results as they arrive
                        (ResultSet.iter_native, what join_native uses)
  --collect sequential  the seed's way: send_task(...).get(), one at a time
"""

import argparse
import json
import math
import sys
import time

from celery.result import ResultSet

from bench_app import app


def percentile(sorted_values, q):
    """Nearest rank, as warren's report computes it."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


def send(task):
    kwargs = {"seconds": task["seconds"]}
    if task.get("cpu"):
        kwargs["cpu"] = True
    return app.send_task(task["name"], kwargs=kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, help="plan JSON file ('-' for stdin)")
    parser.add_argument("--collect", choices=["concurrent", "sequential"], default="concurrent")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole run")
    args = parser.parse_args()
    if args.plan == "-":
        plan = json.load(sys.stdin)
    else:
        with open(args.plan) as file:
            plan = json.load(file)

    # Connect (broker and result consumer) before the clock starts, as warren's
    # dispatcher does before its first run.
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)

    sent_at = {}
    metas = {}
    done_at = {}
    lost = 0
    started = time.perf_counter()
    if args.collect == "sequential":
        for task in plan:
            t0 = time.perf_counter()
            result = send(task)
            sent_at[result.id] = t0
            try:
                result.get(timeout=args.timeout, propagate=False)
            except Exception:  # noqa: BLE001  (a timeout: counted as lost)
                lost += 1
                continue
            done_at[result.id] = time.perf_counter()
            metas[result.id] = result._cache or {}
        published = None
    else:
        results = []
        for task in plan:
            t0 = time.perf_counter()
            result = send(task)
            sent_at[result.id] = t0
            results.append(result)
        published = time.perf_counter() - started
        try:
            for task_id, meta in ResultSet(results).iter_native(timeout=args.timeout):
                done_at[task_id] = time.perf_counter()
                metas[task_id] = meta or {}
        except Exception as exc:  # noqa: BLE001  (a timeout: the rest are lost)
            print(f"bench_client: {type(exc).__name__}: {exc}", file=sys.stderr)
        lost = len(plan) - len(done_at)
    wall = time.perf_counter() - started

    latencies = sorted((done_at[i] - sent_at[i]) * 1000.0 for i in done_at)
    per_worker = {}
    failed = 0
    for meta in metas.values():
        worker = (meta.get("worker") or "unknown").split("@")[0]
        per_worker[worker] = per_worker.get(worker, 0) + 1
        if meta.get("status") != "SUCCESS":
            failed += 1
    print(
        json.dumps(
            {
                "tasks": len(plan),
                "collect": args.collect,
                "wall_s": round(wall, 4),
                "publish_s": None if published is None else round(published, 4),
                "tasks_per_s": round(len(done_at) / wall, 2) if wall > 0 else 0.0,
                "latency_ms": {
                    "p50": round(percentile(latencies, 0.50), 2),
                    "p95": round(percentile(latencies, 0.95), 2),
                    "p99": round(percentile(latencies, 0.99), 2),
                    "max": round(latencies[-1], 2) if latencies else 0.0,
                },
                "per_worker": dict(sorted(per_worker.items())),
                "failed": failed,
                "lost": lost,
            }
        )
    )


if __name__ == "__main__":
    main()
