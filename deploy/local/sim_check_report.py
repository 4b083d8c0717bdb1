"""The files of a recorded autoscaling run (deploy/local/sim-check-record.sh), put on
the load test's clock, for checking the operator's simulator against reality.

Reads what the run left in --dir: samples.csv and pods.jsonl (sim_check_sample.py),
taskqueues.json (`kubectl get tq -o json`), arrivals.csv (`load-test --trace-out`),
load-test.log (its stderr, which names the Unix time of the trace's t_s 0) and
load-test.json (its report). Writes to --out:

  real.csv          t_s,queue,spec_replicas,ready_pods,ready,unacked (samples from t_s 0)
  taskqueues.yaml   the TaskQueues as applied: apiVersion, kind, name and spec
  startup.json      pod start-up delays (creation -> Ready), each pod's times, what the
                    run came to per queue, and the run's metadata

arrivals.csv is copied by the script beside them.
"""

import argparse
import csv
import json
import math
import re
import sys
from datetime import datetime
from pathlib import Path

ORIGIN = re.compile(r"t_s 0 = Unix time ([0-9.]+)")
REAL_HEADER = ["t_s", "queue", "spec_replicas", "ready_pods", "ready", "unacked"]


def origin(stderr_text):
    """The Unix time of the trace's t_s 0, from the load test's stderr."""
    match = ORIGIN.search(stderr_text)
    if not match:
        raise ValueError("the load test's stderr names no 't_s 0 = Unix time'")
    return float(match.group(1))


def real_rows(samples, t0):
    """Samples (dicts of samples.csv) on the trace's clock, from t_s 0 on."""
    out = []
    for s in samples:
        t = float(s["unix_s"]) - t0
        if t < 0 or "" in (s["spec_replicas"], s["ready"], s["unacked"]):
            continue
        out.append(
            {
                "t_s": round(t, 3),
                "queue": s["queue"],
                "spec_replicas": int(s["spec_replicas"]),
                "ready_pods": int(s["ready_pods"]),
                "ready": int(s["ready"]),
                "unacked": int(s["unacked"]),
            }
        )
    return out


def unix(timestamp):
    """An API timestamp (RFC 3339, whole seconds) as Unix seconds."""
    return datetime.fromisoformat(timestamp).timestamp()


def pods(events, t0, queue_of):
    """Each worker pod the watch saw, on the trace's clock: when it was seen created,
    seen Ready and seen deleted, and its start-up delay two ways: `watch_s` from the
    watch's own times (milliseconds; pods already there when the watch began have none)
    and `status_s` from creationTimestamp to the Ready condition's lastTransitionTime
    (the API's whole seconds)."""
    by_uid = {}
    for e in events:
        p = by_uid.setdefault(
            e["uid"],
            {
                "name": e["name"],
                "queue": queue_of.get(e["worker"]),
                "listed": e["event"] == "LISTED",
                "seen_s": e["seen_s"],
                "created": e["created"],
            },
        )
        if e["ready"] and "ready_seen_s" not in p:
            p["ready_seen_s"] = e["seen_s"]
            p["ready_since"] = e["ready_since"]
        if (e["deleting"] or e["event"] == "DELETED") and "deleted_seen_s" not in p:
            p["deleted_seen_s"] = e["seen_s"]
    out = []
    for p in sorted(by_uid.values(), key=lambda p: p["seen_s"]):
        ready = p.get("ready_seen_s")
        deleted = p.get("deleted_seen_s")
        status = None
        if p.get("ready_since") and p["created"]:
            status = unix(p["ready_since"]) - unix(p["created"])
        out.append(
            {
                "name": p["name"],
                "queue": p["queue"],
                "created_t_s": None if p["listed"] else round(p["seen_s"] - t0, 3),
                "ready_t_s": None if ready is None else round(ready - t0, 3),
                "deleted_t_s": None if deleted is None else round(deleted - t0, 3),
                "watch_s": None if p["listed"] or ready is None else round(ready - p["seen_s"], 3),
                "status_s": status,
            }
        )
    return out


def stats(values):
    """count, min, p50 (nearest rank), max of the values that are there."""
    v = sorted(x for x in values if x is not None)
    if not v:
        return {"count": 0, "min": None, "p50": None, "max": None}
    p50 = v[max(1, math.ceil(0.5 * len(v))) - 1]
    return {"count": len(v), "min": v[0], "p50": p50, "max": v[-1]}


def first_after(rows, t, predicate):
    """The t_s of the first row at or after t from which predicate holds to the end."""
    found = None
    for r in rows:
        if r["t_s"] < t:
            continue
        if predicate(r):
            found = r["t_s"] if found is None else found
        else:
            found = None
    return found


def per_queue(real, arrivals):
    """What the run came to on each queue: tasks, peak replicas and when, and when the
    queue drained, the replicas were back at 0 and the last worker pod was gone."""
    out = {}
    for queue in sorted({r["queue"] for r in real}):
        rows = [r for r in real if r["queue"] == queue]
        times = [a["t_s"] for a in arrivals if a["queue"] == queue]
        if not rows or not times:
            continue
        first, last = min(times), max(times)
        peak = max(r["spec_replicas"] for r in rows)
        peak_at = next(r["t_s"] for r in rows if r["spec_replicas"] == peak)
        drained = first_after(rows, last, lambda r: r["ready"] + r["unacked"] == 0)
        zero = first_after(rows, peak_at, lambda r: r["spec_replicas"] == 0)
        no_pods = first_after(rows, peak_at, lambda r: r["spec_replicas"] + r["ready_pods"] == 0)
        out[queue] = {
            "tasks": len(times),
            "first_arrival_t_s": round(first, 3),
            "last_arrival_t_s": round(last, 3),
            "peak_spec_replicas": peak,
            "peak_t_s": peak_at,
            "first_arrival_to_peak_s": round(peak_at - first, 3),
            "peak_ready_pods": max(r["ready_pods"] for r in rows),
            "peak_backlog": max(r["ready"] + r["unacked"] for r in rows),
            "drained_t_s": drained,
            "replicas_zero_t_s": zero,
            "no_ready_pods_t_s": no_pods,
        }
    return out


def scalar(value):
    """A YAML scalar: JSON's spelling of it is valid YAML."""
    return json.dumps(value)


def yaml_lines(value, indent=0):
    """Block YAML of JSON-like data (dicts, lists, scalars)."""
    pad = "  " * indent
    lines = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        lead = f"{pad}{key}:" if isinstance(value, dict) else f"{pad}-"
        if isinstance(item, (dict, list)) and item:
            lines.append(lead)
            lines.extend(yaml_lines(item, indent + 1))
        else:
            lines.append(f"{lead} {scalar(item)}")
    return lines


def taskqueues_yaml(listing):
    """The TaskQueues as applied, stripped to what a simulator reads: one document each."""
    docs = []
    for tq in sorted(listing.get("items", []), key=lambda tq: tq["metadata"]["name"]):
        doc = {
            "apiVersion": tq["apiVersion"],
            "kind": tq["kind"],
            "metadata": {"name": tq["metadata"]["name"]},
            "spec": tq["spec"],
        }
        docs.append("\n".join(yaml_lines(doc)) + "\n")
    return "---\n" + "---\n".join(docs)


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--load-command", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--interval", type=float, required=True)
    p.add_argument("--recording-s", type=float, required=True)
    a = p.parse_args()
    t0 = origin((a.dir / "load-test.log").read_text())
    listing = json.loads((a.dir / "taskqueues.json").read_text())
    queue_of = {
        tq["spec"]["scaleTargetRef"]["name"]: tq["spec"]["queue"] for tq in listing["items"]
    }
    real = real_rows(read_csv(a.dir / "samples.csv"), t0)
    arrivals = [
        {"t_s": float(r["t_s"]), "queue": r["queue"]} for r in read_csv(a.dir / "arrivals.csv")
    ]
    events = [json.loads(line) for line in (a.dir / "pods.jsonl").read_text().splitlines()]
    seen = pods(events, t0, queue_of)
    report = next(
        json.loads(line)
        for line in (a.dir / "load-test.json").read_text().splitlines()
        if line.startswith("{")
    )
    a.out.mkdir(parents=True, exist_ok=True)
    with (a.out / "real.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=REAL_HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(real)
    (a.out / "taskqueues.yaml").write_text(taskqueues_yaml(listing))
    startup = {
        "startup_delay_s": {
            "watch": stats(p["watch_s"] for p in seen),
            "status": stats(p["status_s"] for p in seen),
            "measured": "pod creation -> Ready condition True. watch: the times a watch of "
            "the worker pods saw the pod added and saw it Ready (milliseconds); status: "
            "creationTimestamp -> the Ready condition's lastTransitionTime (whole seconds)",
        },
        "queues": per_queue(real, arrivals),
        "run": {
            "date": datetime.fromtimestamp(t0).astimezone().isoformat(timespec="seconds"),
            "commit": a.commit,
            "load_command": a.load_command,
            "namespace": a.namespace,
            "t0_unix_s": t0,
            "sample_interval_s": a.interval,
            "samples_until_t_s": real[-1]["t_s"] if real else None,
            "recording_s": a.recording_s,
            "arrivals": len(arrivals),
            "load_test": {
                k: report.get(k)
                for k in ("tasks", "wall_s", "failed", "lost", "unpublished", "duplicates")
            },
        },
        "pods": seen,
    }
    (a.out / "startup.json").write_text(json.dumps(startup, indent=2) + "\n")
    print(json.dumps({k: startup[k] for k in ("startup_delay_s", "queues")}, indent=2))
    if len(arrivals) != report.get("tasks"):
        sys.exit(f"arrivals.csv has {len(arrivals)} rows for {report.get('tasks')} tasks")


if __name__ == "__main__":
    main()
