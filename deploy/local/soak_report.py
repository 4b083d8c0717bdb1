"""The soak's figures (deploy/local/soak.sh): tasks planned, answered, lost and
duplicated, from the dispatcher's reports, and whether each component's memory,
the operator's open files and the broker's connections stayed flat, from the
samples. Flat: the median of the last third of the samples within 10 % (memory)
of the median of the first third after warm-up (the first two minutes, while the
workers scale up for the first time). Exits 1 when a task was lost or memory grew.
"""

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

WARM_UP_S = 120
GROWTH_LIMIT = 0.10


def runs(out: Path) -> list[dict]:
    reports = []
    for path in sorted(out.glob("*.json")):
        if path.name == "events.json":
            continue
        for line in path.read_text().splitlines():
            if line.strip().startswith("{"):
                reports.append(json.loads(line))
    return reports


def trend(rows: list[dict], column: str) -> dict:
    settled = [r for r in rows if r["t_s"] >= WARM_UP_S] or rows
    third = max(1, len(settled) // 3)
    first = statistics.median(r[column] for r in settled[:third])
    last = statistics.median(r[column] for r in settled[-third:])
    growth = (last - first) / first if first else 0.0
    return {"first_third_median": first, "last_third_median": last, "growth": growth}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("result", type=Path)
    for flag in (
        "--minutes",
        "--rate",
        "--burst-tasks",
        "--burst-every",
        "--kill-every",
        "--kills",
    ):
        parser.add_argument(flag, type=float, required=True)
    args = parser.parse_args()
    with (args.out / "samples.csv").open() as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    reports = runs(args.out)
    tasks = sum(r["tasks"] for r in reports)
    lost = sum(r["lost"] + r["unpublished"] for r in reports)
    failed = sum(r["failed"] for r in reports)
    duplicates = sum(r["duplicates"] for r in reports)
    trends = {
        column: trend(rows, column)
        for column in (
            "operator_rss_kib",
            "operator_fds",
            "worker_rss_max_kib",
            "rabbitmq_rss_kib",
            "connections",
        )
    }
    per_worker = [
        r["connections"] / r["workers"] for r in rows if r["workers"] > 0 and r["connections"] >= 0
    ]
    result = {
        "minutes": args.minutes,
        "rate_per_s": args.rate,
        "burst_tasks": args.burst_tasks,
        "burst_every_s": args.burst_every,
        "kill_every_s": args.kill_every,
        "worker_pods_killed": args.kills,
        "samples": len(rows),
        "tasks": tasks,
        "lost": lost,
        "failed": failed,
        "duplicates": duplicates,
        "most_workers": max(r["workers"] for r in rows),
        "connections_per_worker_median": statistics.median(per_worker) if per_worker else None,
        "trends": trends,
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    grew = [
        c
        for c in ("operator_rss_kib", "worker_rss_max_kib", "rabbitmq_rss_kib")
        if trends[c]["growth"] > GROWTH_LIMIT
    ]
    if lost or grew:
        print(f"soak failed: lost {lost}, memory grew: {grew or 'none'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
