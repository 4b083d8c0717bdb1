"""One scale-down run of test-e2e step 4 (and bench-scale-down.sh) as a JSON record.

Reads what the run left in --dir: the senders' results (`<name>-short-N.json`,
`<name>-long-N.json`), their times (`.time`: start, end, exit code, from the test's
clock) and the Deployment's replica changes (`<name>-replicas.log`: time, replicas);
takes the broker's redelivery and ack counters from the arguments. Everything is
measured by the test, outside the operator: interrupted tasks are redeliveries,
duplicates are acks beyond the tasks sent, wasted task-seconds are the long tasks'
time beyond their own duration, and the scale-down delay runs from the last short
task's result to the first replica change below the peak (negative when the
scale-down came first). The record's `timeline` keeps the run on its own clock (0 = the
first task sent), for scale_down_chart.py: each task's send and result, and the
replica changes.
"""

import argparse
import glob
import json
import os
from pathlib import Path


def senders(directory, name, kind):
    out = []
    for path in sorted(glob.glob(os.path.join(directory, f"{name}-{kind}-*.time"))):
        start, end, rc = Path(path).read_text().split()
        result_path = Path(path[: -len(".time")] + ".json")
        text = result_path.read_text() if result_path.exists() else ""
        out.append(
            {
                "start": float(start),
                "end": float(end),
                "ok": rc == "0" and '"SUCCESS"' in text,
            }
        )
    return out


def replica_changes(directory, name):
    path = Path(directory, f"{name}-replicas.log")
    changes = []
    for line in path.read_text().splitlines() if path.exists() else []:
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            changes.append((float(fields[0]), int(fields[1])))
    return changes


def timeline(short, long, extra, changes):
    """The run on its own clock; `extra` is each long task's time beyond its duration."""
    t0 = min((s["start"] for s in short + long), default=0.0)

    def task(kind, sender, extra_s):
        return {
            "kind": kind,
            "sent_s": round(sender["start"] - t0, 2),
            "result_s": round(sender["end"] - t0, 2),
            "ok": sender["ok"],
            "extra_s": round(extra_s, 1),
        }

    tasks = [task("short", s, 0.0) for s in short]
    tasks += [task("long", s, e) for s, e in zip(long, extra, strict=True)]
    return {"tasks": tasks, "replicas": [[round(t - t0, 2), r] for t, r in changes]}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--policy", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--short", type=float, required=True)
    p.add_argument("--long", type=float, required=True)
    p.add_argument("--grace", type=float, required=True)
    p.add_argument("--redelivered", type=int, required=True)
    p.add_argument("--acks", type=int, required=True)
    a = p.parse_args()
    short = senders(a.dir, a.name, "short")
    long = senders(a.dir, a.name, "long")
    tasks = len(short) + len(long)
    changes = replica_changes(a.dir, a.name)
    peak = max((r for _, r in changes), default=0)
    short_done = max((s["end"] for s in short), default=None)
    # Negative when the scale-down came before the short tasks ended, while every
    # worker was busy.
    first_down = next((t for t, r in changes if r < peak), None)
    extra = [max(0.0, (s["end"] - s["start"]) - a.long) for s in long]
    record = {
        "policy": a.policy,
        "short_s": a.short,
        "long_s": a.long,
        "grace_s": a.grace,
        "tasks": tasks,
        "results": sum(s["ok"] for s in short + long),
        "interrupted": a.redelivered,
        "duplicates": max(0, a.acks - tasks),
        "wasted_task_s": round(sum(extra), 1),
        "long_task_extra_s": [round(e, 1) for e in extra],
        "replicas": [r for _, r in changes],
        "scale_down_delay_s": (
            round(first_down - short_done, 2) if first_down and short_done else None
        ),
        "timeline": timeline(short, long, extra, changes),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
