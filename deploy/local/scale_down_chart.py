"""The scale-down benchmark's comparison as a chart: one run of IdleFirst and one of Any
(the first of each in docs/bench-results/scale-down.json, written by
bench-scale-down.sh), each as the worker Deployment's replicas over the run and its six
tasks from send to result. A long task that ran longer than its own duration was
interrupted by the scale-down and redelivered: its bar is drawn in red with the
seconds it lost. Everything drawn was measured by the benchmark, outside the operator.

usage: scale_down_chart.py --results SCALE_DOWN_JSON --out SVG
"""

import argparse
import json
from pathlib import Path

from svg_chart import PALETTE, Chart

COLORS = {"short": PALETTE[0], "long": PALETTE[2], "interrupted": PALETTE[1]}
NAMES = {"short": "short task", "long": "long task", "interrupted": "long task, interrupted"}
# Longer than this beyond its own duration: the task was run again (not network jitter).
INTERRUPTED_S = 1.0


def first_runs(results):
    """The first run of each policy that recorded its timeline, IdleFirst first."""
    runs = {}
    for record in results.get("records", []):
        if "timeline" in record:
            runs.setdefault(record["policy"], record)
    return [runs[p] for p in ("IdleFirst", "Any") if p in runs]


def chart(results):
    runs = first_runs(results)
    if not runs:
        raise SystemExit("no run with a timeline in the results (bench-scale-down.sh writes them)")
    x_max = max(max(t["result_s"] for t in r["timeline"]["tasks"]) for r in runs)
    x_max = max([x_max] + [c[0] for r in runs for c in r["timeline"]["replicas"]])
    plan = results["plan"]
    subtitle = (
        f"3 short ({plan['short_s']:g} s) and 3 long ({plan['long_s']:g} s) tasks on 6 worker "
        f"pods, one each; the TaskQueue asks for 3; grace {plan['grace_s']:g} s; "
        f"{results.get('finished', '')}"
    )
    # Room on the right for the notes of interrupted tasks.
    x_end = x_max * 1.25
    c = Chart("Scale-down while tasks run: IdleFirst against Any", subtitle, x_end)
    for run in runs:
        policy, line = run["policy"], run["timeline"]
        replicas = c.panel(f"{policy}: spec.replicas", 7, height=70, integer=True)
        points = [(t, r) for t, r in line["replicas"]]
        if points:
            points.append((x_end, points[-1][1]))
        replicas.step(points, "#333", "spec.replicas")
        tasks = c.panel(
            f"{policy}: each task, sent -> result ({run['interrupted']} interrupted, "
            f"{run['wasted_task_s']:g} task-s wasted)",
            1,
            height=16 * len(line["tasks"]) + 8,
            y_ticks=False,
        )
        for row, task in enumerate(line["tasks"]):
            kind = task["kind"]
            note = ""
            if task["extra_s"] > INTERRUPTED_S:
                kind = "interrupted"
                note = f"+{task['extra_s']:g} s: run again"
            if not task["ok"]:
                note = "no result"
            tasks.bar(row, task["sent_s"], task["result_s"], COLORS[kind], NAMES[kind], note)
    return c.render()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--results", required=True, help="scale-down.json")
    p.add_argument("--out", required=True, help="the SVG to write")
    a = p.parse_args()
    Path(a.out).write_text(chart(json.loads(Path(a.results).read_text())))


if __name__ == "__main__":
    main()
