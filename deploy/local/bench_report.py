#!/usr/bin/env python3
"""Writes docs/benchmarks.md from the records of one `make bench` run.

  bench_report.py record --tags JSON --records FILE   (JSON lines on stdin)
  bench_report.py report --records FILE --meta FILE --plans DIR --out FILE

Every figure in the report comes from the records file given (one JSON object
per measurement, written by deploy/local/bench-task-flow.sh) and the plans the
run used; nothing is carried over from earlier runs.

Efficiency is computed here, the same way for warren and Celery, from the task
plan both were given: ideal wall time = the largest, over the queues, of
max(sum of the queue's task durations / its workers, its longest task), as
dispatcher/src/load_test/report.rs computes it (which, for warren's own
output, uses the durations the workers report instead of the planned ones).
"""

import argparse
import datetime
import heapq
import json
import statistics
import sys
from pathlib import Path

SEED_COUNTS = (20, 50, 100)


def load_plan(plans_dir, count):
    return json.loads((Path(plans_dir) / f"warren-{count}.json").read_text())


def by_queue(plan):
    queues = {}
    for task in plan:
        queues.setdefault(task["queue"], []).append(task["seconds"])
    return queues


def ideal_wall(plan, workers):
    """The bound both systems are measured against (divisible work)."""
    return max(max(sum(d) / workers, max(d)) for d in by_queue(plan).values())


def fifo_wall(plan, workers):
    """Wall time of a perfect FIFO dispatcher with no overhead at all: each queue's
    tasks, in plan order, each to the first worker that is free. A dispatcher
    that starts each queue's tasks in order cannot beat it."""
    wall = 0.0
    for durations in by_queue(plan).values():
        free = [0.0] * workers
        for d in durations:
            heapq.heappush(free, heapq.heappop(free) + d)
        wall = max(wall, max(free))
    return wall


def median_run(runs, key="tasks_per_s"):
    """The run with the median rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.get(key) or 0.0)
    return ordered[(len(ordered) - 1) // 2] if ordered else None


def fmt(value, digits=1):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def record(args):
    """Appends each JSON line of stdin, tagged, to the records; one line of progress each."""
    tags = json.loads(args.tags)
    with open(args.records, "a") as out:
        for line in sys.stdin:
            line = line.strip()
            if not line.startswith("{"):
                continue
            row = {**tags, **json.loads(line)}
            out.write(json.dumps(row) + "\n")
            rate = row.get("round_trips_per_s") or row.get("tasks_per_s")
            count = row.get("tasks", row.get("requests"))
            print(f"   {row.get('system', '?'):7} {row.get('collect', ''):10} {count} tasks: "
                  f"{rate}/s, wall {row.get('wall_s')} s, lost {row.get('lost', 0)}",
                  file=sys.stderr)


def operator_times(results: Path) -> str:
    """When the operator's benchmark results were written, as a clause, if known."""
    times = []
    for name in ("operator-reaction.json", "operator-scale.json"):
        path = results / name
        if path.exists():
            finished = json.loads(path.read_text()).get("finished")
            if finished:
                times.append(f"{name} at {finished}")
    return f" (finished: {', '.join(times)})" if times else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--tags", required=True)
    rec.add_argument("--records", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("--records", required=True)
    rep.add_argument("--meta", required=True)
    rep.add_argument("--plans", required=True)
    rep.add_argument("--failures", type=int, default=0)
    rep.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    else:
        report(args)


def report(args):

    records = [json.loads(line) for line in open(args.records) if line.strip()]
    meta = json.load(open(args.meta))
    load_end = meta.get("load_end") or open("/proc/loadavg").read().split()[:3]
    finished = meta.get("finished") or datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds")
    plans = {n: load_plan(args.plans, n) for n in SEED_COUNTS}

    def runs(**match):
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]

    def efficiency(run, workers):
        plan = plans[run["tasks"]]
        ideal_rate = len(plan) / ideal_wall(plan, workers)
        return run["tasks_per_s"] / ideal_rate

    out = []
    w = out.append
    loads = [r["load1"] for r in records if "load1" in r]
    w("# Benchmarks: warren's task flow next to Celery")
    w("")
    how = ("(`bash deploy/local/bench-task-flow.sh` after `make rabbitmq-up build`)"
           if meta["command"] == "make bench" else "(with RabbitMQ up and release binaries built)")
    w(f"Measured by `{meta['command']}` {how}, in one run on one machine and one broker, from "
      f"{meta['started']} to {finished}. Every figure below comes from that run; the "
      "raw records are in [bench-results/task-flow.jsonl](bench-results/task-flow.jsonl) "
      "and the run's settings in [bench-results/task-flow-meta.json](bench-results/task-flow-meta.json). "
      "The operator's benchmarks (the last two sections) are part of `make bench` too; their "
      "figures come from separate runs on the same machine and are not compared with the "
      "task flow's" + operator_times(Path(args.records).parent) + ".")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| machine | {meta['cpus']} CPUs ({meta['cpu_model']}), Linux {meta['kernel']} |")
    w(f"| broker | RabbitMQ {meta['rabbitmq']} (Erlang {meta['erlang']}) on 127.0.0.1 |")
    w(f"| warren | `target/release` binaries, {meta['rustc']}, commit {meta['git_commit']}"
      f"{' plus uncommitted changes' if meta['git_dirty'] else ''} |")
    w(f"| Celery | {meta['celery']} (venv `.local/venv-celery`, Python "
      f"{meta.get('python', '?')}) |")
    w(f"| load average (1 min) | {meta['load_start'][0]} at the start, {load_end[0]} at the end, "
      f"{min(loads):.2f} to {max(loads):.2f} at the measurements |" if loads else
      f"| load average (1 min) | {meta['load_start'][0]} at the start, {load_end[0]} at the end |")
    if args.failures:
        w(f"| **failed measurements** | {args.failures} (see the run's output) |")
    w("")
    busy = max([float(meta["load_start"][0]), float(load_end[0])] + loads) if loads else 0.0
    if busy > 1.5:
        w(f"The machine was not idle during the run (1-minute load average up to {busy:.2f} "
          f"on {meta['cpus']} CPUs: other processes were running). Absolute rates are lower, "
          "and noisier, than on an idle machine; the side-by-side comparisons ran under the "
          "same conditions, within minutes of each other.")
        w("")
    w("Same for both systems: the same broker, the same task plan (`warren-dispatcher plan "
      "--tasks N --seed 42`: names, queues, durations in whole milliseconds, order), task "
      "messages persistent (delivery mode 2) and published with publisher confirms, results "
      "persistent in a durable reply queue and published with confirms. Celery gets the "
      "last two from `protocol/celery/bench_app.py` (`confirm_publish`, `result_persistent`); "
      "its other settings are its defaults: prefork pool, `-c 1`, prefetch multiplier 4, "
      "tasks acked as they start, `rpc://` results; `--without-gossip --without-mingle "
      "--without-heartbeat`. warren's worker publishes the result, waits for its confirm, "
      "and only then acks the task (prefetch = concurrency).")
    w("")

    # --- the seed's table -------------------------------------------------------------
    w("## The seed's table: waiting tasks of 0.1-0.2 s, concurrent collection")
    w("")
    w("Tasks alternate task_a/task_b (queue_a/queue_b); each worker runs one task at a "
      f"time. Median of {meta['reps']} runs per cell (the efficiency range of the runs in "
      "brackets). *Efficiency* = tasks/s / ideal tasks/s, the ideal from the plan: per queue "
      "max(sum of durations / workers, longest task), the slowest queue deciding. "
      "*FIFO bound* is the efficiency of a perfect dispatcher with zero overhead that hands "
      "each queue's tasks out in order to whichever worker is free first: with three workers "
      "and 10-50 tasks per queue the work cannot be split evenly, so no in-order queue "
      "consumer can reach 1.0 there.")
    w("")
    w("| workers/queue | tasks | ideal tasks/s | FIFO bound | warren tasks/s | warren efficiency | "
      "Celery tasks/s | Celery efficiency | warren p50 / p95 latency ms | Celery p50 / p95 ms |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    seed_summary = {}
    for workers in (1, 3):
        for n in SEED_COUNTS:
            plan = plans[n]
            ideal_rate = n / ideal_wall(plan, workers)
            fifo = ideal_wall(plan, workers) / fifo_wall(plan, workers)
            cells = []
            lat = []
            for system in ("warren", "celery"):
                rs = runs(phase="seed", system=system, workers_per_queue=workers,
                          collect="concurrent", tasks=n)
                m = median_run(rs)
                if m is None:
                    cells += ["n/a", "n/a"]
                    lat.append("n/a")
                    continue
                effs = [efficiency(r, workers) for r in rs]
                seed_summary[(system, workers, n)] = (m, efficiency(m, workers), effs)
                problems = sum(r.get("lost", 0) + r.get("failed", 0) for r in rs)
                flag = f" ({problems} lost/failed)" if problems else ""
                cells += [fmt(m["tasks_per_s"]) + flag,
                          f"**{efficiency(m, workers):.3f}** ({min(effs):.3f}-{max(effs):.3f})"]
                lat.append(f"{m['latency_ms']['p50']:.0f} / {m['latency_ms']['p95']:.0f}")
            w(f"| {workers} | {n} | {ideal_rate:.1f} | {fifo:.3f} | {cells[0]} | {cells[1]} | "
              f"{cells[2]} | {cells[3]} | {lat[0]} | {lat[1]} |")
    w("")
    spread = {}
    for system in ("warren", "celery"):
        for n in SEED_COUNTS:
            s = seed_summary.get((system, 3, n))
            if s:
                spread[(system, n)] = " ".join(f"{k}:{v}" for k, v in s[0]["per_worker"].items())
    if spread:
        w("Tasks per worker in the median three-worker runs:")
        w("")
        for (system, n), text in spread.items():
            w(f"- {system}, {n} tasks: {text}")
        w("")

    # --- sequential vs concurrent -------------------------------------------------------
    w("## Sequential collection (the seed's bottleneck) next to concurrent")
    w("")
    w("One worker per queue. *Sequential* sends a task, blocks on its result, then sends "
      "the next (warren: `load-test --collect sequential`; Celery: `send_task(...).get()`), "
      "so only one of the two workers is ever busy and the client waits a round trip "
      "between tasks. *Concurrent* is the median run above.")
    w("")
    w("| tasks | ideal tasks/s | warren sequential | warren concurrent | Celery sequential | Celery concurrent |")
    w("|---|---|---|---|---|---|")
    for n in SEED_COUNTS:
        plan = plans[n]
        row = [str(n), f"{n / ideal_wall(plan, 1):.1f}"]
        for system in ("warren", "celery"):
            seq = median_run(runs(phase="seed", system=system, workers_per_queue=1,
                                  collect="sequential", tasks=n))
            con = seed_summary.get((system, 1, n))
            row.append(f"{fmt(seq['tasks_per_s'])} ({efficiency(seq, 1):.3f})" if seq else "n/a")
            row.append(f"{fmt(con[0]['tasks_per_s'])} ({con[1]:.3f})" if con else "n/a")
        w("| " + " | ".join(row) + " |")
    w("")
    w("Tasks/s, efficiency in brackets.")
    w("")

    # --- no work ------------------------------------------------------------------------
    echo = runs(phase="nowork", system="echo")
    echo_cf = runs(phase="nowork", system="echo-celery-format")
    warren_nw = runs(phase="nowork", system="warren")
    celery_nw = runs(phase="nowork", system="celery")
    conc = meta["nowork_concurrency"]
    w("## Tasks that do no work: round trips per second")
    w("")
    w("One client, one worker (or responder) per queue, requests alternating over two "
      "queues; every task a persistent message published with a confirm, every result a "
      "persistent message to a durable reply queue, published with a confirm before the "
      "task is acked; the client acks results after taking them.")
    w("")
    w(f"- **warren**: `warren-worker --concurrency {conc}` (prefetch {conc}) on queue_a and "
      f"on queue_b; `warren-dispatcher load-test --no-work --tasks {meta['nowork_tasks']} "
      "--window 1000` (at most 1,000 tasks in flight).")
    w(f"- **broker ceiling**: `dispatcher/examples/echo_ceiling.rs`, a bare lapin echo with "
      f"the same settings: one client connection sends {meta['nowork_tasks']} requests of "
      "200 bytes (persistent, confirmed, at most 1,000 in flight) over two durable queues; "
      f"one responder connection per queue consumes with prefetch {conc} and manual acks, "
      "publishes a 100-byte persistent reply to the durable reply queue, waits for its "
      "confirm, then acks; the client acks replies as warren's dispatcher does. No JSON, "
      "no headers, nothing built per message.")
    w("- **ceiling, Celery's format**: the same echo with `--celery-format`: the request is "
      "a warren task message (Celery protocol v2: ~16 headers and a JSON body, through the "
      "queue's direct exchange) and the reply an `rpc://` result with warren's two result "
      "headers, both built once and reused. What the format costs the broker and lapin, "
      "without any of warren's own work.")
    w(f"- **Celery**: one worker per queue (`-c 1`, prefork, prefetch 4), "
      f"`bench_client.py` sending {meta['celery_nowork_tasks']} tasks with `send_task` "
      "(each publish waits for its confirm), then collecting them with `iter_native`.")
    w("")
    w("Runs of the two echoes and of warren alternate, so all three see the same conditions.")
    w("")
    w("| run | ceiling rt/s | ceiling, Celery format rt/s | warren rt/s | warren / ceiling | "
      "warren / Celery-format ceiling | Celery rt/s | Celery publishes/s |")
    w("|---|---|---|---|---|---|---|---|")
    count = max(len(echo), len(echo_cf), len(warren_nw), len(celery_nw))
    at = lambda xs, i, key: xs[i][key] if i < len(xs) else None  # noqa: E731
    ratio = lambda a, b: f"{a / b:.2f}" if a and b else "n/a"  # noqa: E731
    for i in range(count):
        e = at(echo, i, "round_trips_per_s")
        ecf = at(echo_cf, i, "round_trips_per_s")
        wv = at(warren_nw, i, "tasks_per_s")
        c = celery_nw[i] if i < len(celery_nw) else None
        pub = (c["tasks"] / c["publish_s"]) if c and c.get("publish_s") else None
        w(f"| {i + 1} | {fmt(e, 0)} | {fmt(ecf, 0)} | {fmt(wv, 0)} | {ratio(wv, e)} | "
          f"{ratio(wv, ecf)} | {fmt(c['tasks_per_s'], 0) if c else 'n/a'} | {fmt(pub, 0)} |")
    med = lambda xs, key: statistics.median(r[key] for r in xs) if xs else None  # noqa: E731
    e_med = med(echo, "round_trips_per_s")
    ecf_med = med(echo_cf, "round_trips_per_s")
    w_med = med(warren_nw, "tasks_per_s")
    c_med = med(celery_nw, "tasks_per_s")
    pubs = [c["tasks"] / c["publish_s"] for c in celery_nw if c.get("publish_s")]
    pub_med = statistics.median(pubs) if pubs else None
    # Ratios of runs made back to back, then their median: the pairs share conditions.
    def paired(xs, ys):
        pairs = [(x["tasks_per_s"], y["round_trips_per_s"]) for x, y in zip(xs, ys)]
        values = [a / b for a, b in pairs if a and b]
        return statistics.median(values) if values else None
    r_bare = paired(warren_nw, echo)
    r_format = paired(warren_nw, echo_cf)
    show = lambda r: f"{r:.2f}" if r else "n/a"  # noqa: E731
    w(f"| **median** | **{fmt(e_med, 0)}** | **{fmt(ecf_med, 0)}** | **{fmt(w_med, 0)}** | "
      f"**{show(r_bare)}** | **{show(r_format)}** | **{fmt(c_med, 0)}** | "
      f"{fmt(pub_med, 0)} |")
    w("")
    w("The ratios' medians are medians of the per-run ratios (each warren run against the "
      "echo runs just before it), not ratios of the medians. The spread of the runs is the "
      "noise of this machine at the time of the run.")
    w("")
    problems = sum(r.get("lost", 0) + r.get("failed", 0) for r in warren_nw + celery_nw)
    nacked = sum(r.get("nacked", 0) for r in echo + echo_cf)
    if w_med and c_med and e_med:
        w(f"Medians: warren makes **{show(r_bare)}** of the broker's ceiling "
          + (f"({show(r_format)} of it in Celery's format) " if r_format else "")
          + f"and **{w_med / c_med:.1f}x** Celery's round trips. Lost or failed tasks: "
          f"{problems}; nacked echo requests: {nacked}.")
        w("")
    wl = median_run(warren_nw)
    if wl:
        w(f"warren's median run: latency p50 {wl['latency_ms']['p50']:.0f} ms, p95 "
          f"{wl['latency_ms']['p95']:.0f} ms (with 1,000 in flight most of that is waiting "
          f"in the queue), duplicates {wl['duplicates']}.")
        w("")

    # --- CPU ----------------------------------------------------------------------------
    cpu = sorted(runs(phase="cpu"), key=lambda r: r["workers"])
    w("## CPU-bound tasks: 1, 2 and 4 workers on 2 cores")
    w("")
    w(f"{meta['cpu_tasks']} tasks on queue_a (`load-test --cpu --mix 1:0`), each hashing "
      "SHA-256 for its planned 0.1-0.2 s of wall time on a blocking thread, workers at "
      "concurrency 1. A task hashes for a fixed *time*, so tasks/s keeps rising with "
      "workers even when they only share the cores; the work done, hashes/s, is what shows "
      "the limit.")
    w("")
    w("| workers | tasks/s | efficiency (tasks) | hashes/s | hashes/s vs 1 worker | hashes per task | "
      "cores the workers got |")
    w("|---|---|---|---|---|---|---|")
    base = cpu[0].get("hashes_per_s") if cpu else None
    for r in cpu:
        h = r.get("hashes_per_s")
        per_task = h / r["tasks_per_s"] if h and r["tasks_per_s"] else None
        cores = r["worker_cpu_s"] / r["wall_s"] if r.get("worker_cpu_s") and r["wall_s"] else None
        w(f"| {r['workers']} | {fmt(r['tasks_per_s'])} | {r['efficiency']:.3f} | "
          f"{fmt(h / 1e6 if h else None, 2)} M | "
          f"{(h / base):.2f}x | {fmt(per_task / 1e3 if per_task else None, 0)} k | "
          f"{fmt(cores, 2)} |"
          if h and base else f"| {r['workers']} | {fmt(r['tasks_per_s'])} | n/a | n/a | n/a | n/a | n/a |")
    w("")
    w("*Cores the workers got*: CPU time of the worker processes during the run (from "
      "`/proc`), over its wall time.")
    w("")
    w("Efficiency here is warren's own (`load-test`: from the run times the workers report).")
    w("")

    # --- interpretation -------------------------------------------------------------------
    w("## What it shows")
    w("")
    lines = []
    one = [seed_summary.get(("warren", 1, n)) for n in SEED_COUNTS]
    three = [seed_summary.get(("warren", 3, n)) for n in SEED_COUNTS]
    cel_three = [seed_summary.get(("celery", 3, n)) for n in SEED_COUNTS]
    if all(one):
        lines.append(
            "- One worker per queue: warren's efficiency is "
            + ", ".join(f"{s[1]:.3f}" for s in one)
            + " at 20/50/100 tasks (Celery: "
            + ", ".join(f"{seed_summary[('celery', 1, n)][1]:.3f}" if ("celery", 1, n) in seed_summary
                        else "n/a" for n in SEED_COUNTS)
            + "). Measured against the run times warren's workers report instead of the "
            "planned durations, it is "
            + ", ".join(f"{s[0]['efficiency']:.3f}" for s in one)
            + ": the difference is the sleeps overshooting their planned time (tokio's "
            "timer has millisecond resolution). The rest is the time between two tasks on "
            "a worker with prefetch 1: the result's publish and confirm, the ack, and the "
            "next delivery, which is what keeps a task from starting on a worker that "
            "holds one already.")
    if all(three):
        fifo = [ideal_wall(plans[n], 3) / fifo_wall(plans[n], 3) for n in SEED_COUNTS]
        lines.append(
            "- Three workers per queue: warren's efficiency is "
            + ", ".join(f"{s[1]:.3f}" for s in three)
            + ", against FIFO bounds of " + ", ".join(f"{f:.3f}" for f in fifo)
            + ": of what an in-order dispatcher could reach at all, warren reaches "
            + ", ".join(f"{s[1] / f:.3f}" for s, f in zip(three, fifo)) + ".")
        if all(cel_three):
            text = ("- Celery with three workers per queue: "
                    + ", ".join(f"{s[1]:.3f}" for s in cel_three) + ".")
            if sum(s[1] for s in cel_three) < sum(s[1] for s in three):
                text += (" Each of its workers reserves up to 4 tasks (prefetch multiplier "
                         "4) and acks them as they start, so a short burst spreads unevenly: "
                         "one worker still holds reserved tasks while another is idle.")
            lines.append(text)
    seq_w = [median_run(runs(phase="seed", system="warren", collect="sequential", tasks=n))
             for n in SEED_COUNTS]
    seq_c = [median_run(runs(phase="seed", system="celery", collect="sequential", tasks=n))
             for n in SEED_COUNTS]
    if all(seq_w) and all(seq_c):
        lines.append(
            "- Sequential collection: efficiency "
            + ", ".join(f"{efficiency(r, 1):.2f}" for r in seq_w) + " for warren and "
            + ", ".join(f"{efficiency(r, 1):.2f}" for r in seq_c) + " for Celery. With "
            "one task in flight, the two queues' workers take turns, so at most half the "
            "capacity is used whatever the system; that is the seed's bottleneck, and "
            "collecting concurrently is its cure.")
    if w_med and e_med and c_med:
        text = (f"- No work: warren makes {w_med:,.0f} round trips/s, "
                f"{show(r_bare)} of the bare echo's rate ({e_med:,.0f}/s)")
        if ecf_med:
            text += (f" and {show(r_format)} of the echo's ({ecf_med:,.0f}/s) when it "
                     "carries the same Celery-format messages")
        text += f", and {w_med / c_med:.1f}x Celery's {c_med:,.0f}/s."
        if ecf_med:
            text += (f" Celery's wire format alone (headers the broker and lapin parse, "
                     f"larger messages, a direct exchange) takes the ceiling from "
                     f"{e_med:,.0f} to {ecf_med:,.0f}/s; warren's own work per task "
                     "(encoding, matching results, metrics) accounts for the rest.")
        text += (" On two cores the broker, the client and both workers share the CPU, "
                 "so every microsecond of work per message costs throughput.")
        if pub_med and pub_med < 1.5 * c_med:
            text += (f" Celery's client publishes one task at a time and waits for each "
                     f"confirm ({pub_med:,.0f} publishes/s here), which bounds its rate; "
                     "warren keeps up to 1,000 tasks in flight.")
        lines.append(text)
    if len(cpu) == 3 and all(r.get("hashes_per_s") for r in cpu):
        h = [r["hashes_per_s"] for r in cpu]
        text = (f"- CPU-bound: hashes/s grow {h[1] / h[0]:.2f}x from 1 to 2 workers and "
                f"{h[2] / h[1]:.2f}x from 2 to 4, while tasks/s grows "
                f"{cpu[1]['tasks_per_s'] / cpu[0]['tasks_per_s']:.2f}x and "
                f"{cpu[2]['tasks_per_s'] / cpu[1]['tasks_per_s']:.2f}x.")
        cores = [r["worker_cpu_s"] / r["wall_s"] if r.get("worker_cpu_s") else None for r in cpu]
        if all(cores):
            text += (" The workers got " + ", ".join(f"{c:.2f}" for c in cores)
                     + " cores.")
            if cores[1] / cores[0] >= 1.5 and cores[2] / cores[1] < 1.1:
                text += (" Two cores are the capacity: past two workers, more workers (or "
                         "more replicas from an autoscaler) only share the same cores while "
                         "tasks/s still looks like it scales; the seed's point that scaling out "
                         "helps only when there is capacity behind it.")
            else:
                text += (" This run does not show a clean knee at two workers; other "
                         "processes were using the cores at the same time (see the load "
                         "averages).")
        lines.append(text)
    out.extend(lines)
    w("")
    reaction_file = Path(args.records).parent / "operator-reaction.json"
    if reaction_file.exists():
        r = json.loads(reaction_file.read_text())
        w("## Operator: reaction to a new backlog")
        w("")
        w(f"Backlog appears (50 messages published) -> the operator patches `/scale` (1 -> 5), "
          f"{r['trials']} trials, poll interval {r['poll_interval_s']:g} s, broker statistics "
          f"interval {r['broker_statistics_interval_s']:g} s, against the local control plane "
          "(`cargo test --release -p warren-operator --test bench -- --ignored reaction_time`, "
          "run by `make bench` before the task-flow run; raw samples in "
          "[bench-results/operator-reaction.json](bench-results/operator-reaction.json)).")
        w("")
        w("| p50 | p95 | min | max | target p95 | KEDA defaults, 0 -> 1 |")
        w("|---|---|---|---|---|---|")
        w(f"| {r['p50_s']:.2f} s | {r['p95_s']:.2f} s | {r['min_s']:.2f} s | {r['max_s']:.2f} s "
          "| <= 2.5 s | up to 30 s + statistics age |")
        w("")
        w("What makes it fast: each poll reads the queues' own totals "
          "(`disable_stats=true&enable_queue_totals=true`), current to ~0.1 s, instead of the "
          "statistics database, whose counts lagged 3.8-4.7 s here even at a 1 s statistics "
          "interval (a first version reading statistics measured p50 3.49 s, p95 3.85 s); a "
          "fresh reading triggers the TaskQueue's reconciliation at once, and `/scale` is "
          "patched straight to the target.")
        w("")
    scale_file = Path(args.records).parent / "operator-scale.json"
    if scale_file.exists():
        r = json.loads(scale_file.read_text())
        w(f"## Operator: {r['taskqueues']:,} TaskQueues on one broker")
        w("")
        w(f"{r['taskqueues']:,} TaskQueues over {r['queues']:,} queues in one vhost, 5 s poll interval, "
          "each scaling its own Deployment (`cargo test --release -p warren-operator --test bench -- "
          "--ignored thousand_taskqueues`, run by `make bench`; "
          "[bench-results/operator-scale.json](bench-results/operator-scale.json)). Measured over "
          "three 5 s intervals after every TaskQueue was decided once; the decisions are "
          "read per TaskQueue from the operator's debug log.")
        w("")
        decided = r.get("taskqueues_decided_in_window")
        w("| measure | result | target |")
        w("|---|---|---|")
        w(f"| management API requests per interval | {r['management_requests_per_5s_interval']:.1f} | <= 2 |")
        if decided is not None:
            w(f"| TaskQueues decided in the {r['window_s']:.0f} s window | {decided:,} "
              f"(each at least {r['fewest_decisions_of_a_taskqueue_in_window']} times) | {r['taskqueues']:,} |")
            w(f"| largest gap between two decisions of one TaskQueue | {r['max_gap_between_decisions_s']:.2f} s "
              f"(p99 {r['p99_gap_between_decisions_s']:.2f} s) | one 5 s interval |")
        w(f"| reconciliations per 5 s interval | {r['reconciles_per_5s_interval']:.0f} | |")
        w(f"| operator peak RSS | {r['operator_peak_rss_mib']:.1f} MiB | <= 64 MiB |")
        w(f"| all TaskQueues decided once after start | {r['all_decided_once_in_s']:.0f} s | |")
        w("")
        w("How: replica counts come from a watch cache of Deployments that keeps only names, "
          "resourceVersions and the two counts, so a reconciliation makes no request unless it "
          "scales, or the status changed, or the status is 30 s old; reconciliations run 16 at "
          "a time. The first version GET `/scale` in every reconciliation and, through a bug (the "
          "heartbeat's time was never recorded), wrote the status in every one too: this "
          "2-core machine (API server, etcd, broker and operator together) served about 90 "
          "such reconciliations a second, which "
          "gave 446 reconciliations per interval and 82 MiB peak RSS with no concurrency bound, "
          "and with a bound of 16 left 132 TaskQueues never reconciled: kube-runtime's "
          "scheduler hands out waiting objects in hash order, so under sustained overload the "
          "same objects win. The bound is safe only while reconciliations keep up, which the "
          "per-TaskQueue gap above checks.")
        w("")
    w("## Reproduce")
    w("")
    w("```bash")
    w("make bench        # = make rabbitmq-up build && bash deploy/local/bench-task-flow.sh")
    w("```")
    w("")
    w(f"Knobs (environment): `BENCH_REPS` ({meta['reps']}), `BENCH_NOWORK_TASKS` "
      f"({meta['nowork_tasks']}), `BENCH_CELERY_NOWORK_TASKS` ({meta['celery_nowork_tasks']}), "
      f"`BENCH_NOWORK_CONCURRENCY` ({meta['nowork_concurrency']}), `BENCH_CPU_TASKS` "
      f"({meta['cpu_tasks']}); the values in brackets are this run's. Worker logs go to "
      "`.local/bench/`.")
    w("")
    Path(args.out).write_text("\n".join(out))


if __name__ == "__main__":
    main()
