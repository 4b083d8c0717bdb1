"""Summarises bench-scale-down.sh's runs into docs/bench-results/scale-down.json.

Per policy: scale-downs run, tasks interrupted (the broker's redeliveries), tasks
lost and duplicated, task-seconds wasted (the long tasks' time beyond their own
duration) and the delay from the last short task's result to the scale-down, all
measured by the test; and, from the operator's own counters (labelled as such), the
consumer reads IdleFirst made and their latency.
"""

import argparse
import json
import statistics
import time
from pathlib import Path


def per_policy(records, policy):
    runs = [r for r in records if r["policy"] == policy]
    if not runs:
        return None
    delays = [r["scale_down_delay_s"] for r in runs if r["scale_down_delay_s"] is not None]
    return {
        "runs": len(runs),
        "tasks": sum(r["tasks"] for r in runs),
        "lost": sum(r["tasks"] - r["results"] for r in runs),
        "interrupted": sum(r["interrupted"] for r in runs),
        "interrupted_per_scale_down": round(sum(r["interrupted"] for r in runs) / len(runs), 2),
        "duplicates": sum(r["duplicates"] for r in runs),
        "wasted_task_s_per_scale_down": round(statistics.mean(r["wasted_task_s"] for r in runs), 1),
        "scale_down_delay_median_s": round(statistics.median(delays), 2) if delays else None,
        "scale_down_delays_s": delays,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", required=True)
    p.add_argument("--reps", type=int, required=True)
    p.add_argument("--metrics-before", required=True)
    p.add_argument("--metrics-after", required=True)
    a = p.parse_args()
    records = [json.loads(line) for line in Path(a.records).read_text().splitlines() if line]
    if not records:
        raise SystemExit("no run completed")
    before, after = json.loads(a.metrics_before), json.loads(a.metrics_after)

    def delta(name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    reads = delta("warren_operator_occupancy_read_seconds_count")
    first = records[0]
    out = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reps": a.reps,
        "plan": {
            "short_s": first["short_s"],
            "long_s": first["long_s"],
            "grace_s": first["grace_s"],
            "tasks_per_run": first["tasks"],
        },
        "IdleFirst": per_policy(records, "IdleFirst"),
        "Any": per_policy(records, "Any"),
        "operator_consumer_reads": int(reads),
        "operator_consumer_read_mean_s": (
            round(delta("warren_operator_occupancy_read_seconds_sum") / reads, 4) if reads else None
        ),
        "records": records,
    }
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
