"""Figures shared by the benchmark report's sections: the bounds a run is measured
against (from its plan), medians, and number formatting."""

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

SEED_COUNTS = (20, 50, 100)


def by_queue(plan):
    queues = {}
    for task in plan:
        queues.setdefault(task["queue"], []).append(task["seconds"])
    return queues


def ideal_wall(plan, slots):
    """Per queue max(work / slots, longest task); the slowest queue decides."""
    return max(max(sum(d) / slots, max(d)) for d in by_queue(plan).values())


def fifo_wall(plan, slots):
    """Wall time of a perfect in-order dispatcher with no overhead: each queue's
    tasks, in plan order, each to the slot that is free first."""
    wall = 0.0
    for durations in by_queue(plan).values():
        free = [0.0] * slots
        for d in durations:
            first = free.index(min(free))
            free[first] += d
        wall = max(wall, max(free))
    return wall


def efficiency(run, plan, slots):
    """Measured tasks/s over the plan's ideal on `slots` per queue."""
    return run["tasks_per_s"] * ideal_wall(plan, slots) / len(plan)


def median_run(runs, key="tasks_per_s"):
    """The run with the median rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.get(key) or 0.0)
    return ordered[(len(ordered) - 1) // 2] if ordered else None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=1):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def ratio(a, b, digits=2):
    return f"{a / b:.{digits}f}" if a and b else "n/a"


def joined(values, digits=3):
    return ", ".join(fmt(v, digits) for v in values)


@dataclass
class Run:
    records: list
    meta: dict
    plans_dir: Path
    results_dir: Path
    failures: int
    finished: str
    load_end: list

    def runs(self, **match):
        return [r for r in self.records if all(r.get(k) == v for k, v in match.items())]

    def plan(self, name):
        path = self.plans_dir / name
        return json.loads(path.read_text()) if path.exists() else None

    def result(self, name):
        path = self.results_dir / name
        return json.loads(path.read_text()) if path.exists() else None
