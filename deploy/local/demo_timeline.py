"""The scaling timeline of `make demo` (deploy/local/demo-autoscale.sh), from what the
sampler (sim_check_sample.py) read every half second during the load test: per queue,
the messages waiting (ready) and being worked on (unacked) in RabbitMQ, and the worker
Deployment's spec.replicas and Ready pods from the API server. Writes, with times in
seconds from the load test's start:

    OUT/timeline.csv   t_s,queue,spec_replicas,ready_pods,ready,unacked
    OUT/timeline.svg   backlog and replicas over time, one colour per queue

usage: demo_timeline.py --samples SAMPLES_CSV --start UNIX_S --out DIR --subtitle TEXT
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from svg_chart import PALETTE, Chart

FIELDS = ["spec_replicas", "ready_pods", "ready", "unacked"]


def read_samples(path, start):
    """{queue: [(t_s, {field: int})]} with t_s from the load's start."""
    series = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            t = round(float(row["unix_s"]) - start, 2)
            series[row["queue"]].append((t, {k: int(row[k]) for k in FIELDS}))
    return dict(sorted(series.items()))


def write_csv(series, path):
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["t_s", "queue", *FIELDS])
        rows = [(t, q, *(v[k] for k in FIELDS)) for q, points in series.items() for t, v in points]
        out.writerows(sorted(rows))


def chart(series, subtitle):
    all_points = [p for points in series.values() for p in points]
    if not all_points:
        raise SystemExit("no samples to draw")
    t_min = min(t for t, _ in all_points)
    x_max = max(t for t, _ in all_points)

    def points(queue, field):
        return [(t, v[field]) for t, v in series[queue]]

    most = max(max(v["ready"], v["unacked"]) for _, v in all_points)
    most_replicas = max(max(v["spec_replicas"], v["ready_pods"]) for _, v in all_points)
    title = "make demo: the operator scaling the seed's workers on their queues' backlog"
    c = Chart(title, subtitle, x_max, x_min=t_min)
    backlog = c.panel("messages: waiting (ready) and being worked on (unacked)", most * 1.1)
    replicas = c.panel("workers: spec.replicas and Ready pods", most_replicas + 1, integer=True)
    colors = {queue: PALETTE[i % len(PALETTE)] for i, queue in enumerate(series)}
    # One legend row per panel: the legend lists the lines in the order they are added.
    for queue, color in colors.items():
        backlog.step(points(queue, "ready"), color, f"{queue}: waiting")
        backlog.step(points(queue, "unacked"), color, f"{queue}: being worked on", dashed=True)
    for queue, color in colors.items():
        replicas.step(points(queue, "spec_replicas"), color, f"{queue}: spec.replicas")
        replicas.step(points(queue, "ready_pods"), color, f"{queue}: Ready pods", dashed=True)
    for panel in (backlog, replicas):
        panel.marker(0.0, "load starts")
    return c.render()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", required=True, help="the sampler's samples.csv")
    p.add_argument("--start", type=float, required=True, help="the load's start, Unix seconds")
    p.add_argument("--out", required=True, help="directory for timeline.csv and timeline.svg")
    p.add_argument("--subtitle", default="", help="the chart's second line (what ran, when)")
    a = p.parse_args()
    series = read_samples(a.samples, a.start)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(series, out / "timeline.csv")
    (out / "timeline.svg").write_text(chart(series, a.subtitle))


if __name__ == "__main__":
    main()
