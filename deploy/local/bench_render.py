"""Renders docs/benchmarks.md from one run's records (see bench_report.py).

Only what the run measured, and the settings it used, labelled as settings: no
stored prose with figures of earlier runs, no explanations the run did not measure.
"""

import itertools

from bench_figures import (
    SEED_COUNTS,
    efficiency,
    fifo_wall,
    fmt,
    ideal_wall,
    joined,
    median,
    median_run,
    ratio,
)
from bench_sections import (
    cpu_section,
    nowork_figures,
    nowork_section,
    reaction_section,
    scale_down_section,
    scale_section,
)


def render(run):
    seed = seed_cells(run)
    nowork = nowork_figures(run)
    sections = [
        header(run),
        seed_section(run, seed),
        sequential_section(run, seed),
        nowork_section(run, nowork),
        cpu_section(run),
        summary_section(run, seed, nowork),
        reaction_section(run),
        scale_section(run),
        scale_down_section(run),
        reproduce_section(run),
    ]
    return "\n".join(line for section in sections for line in section)


def header(run):
    meta, loads = run.meta, [r["load1"] for r in run.records if "load1" in r]
    times = [
        f"{name} at {r['finished']}"
        for name in ("operator-reaction.json", "operator-scale.json", "scale-down.json")
        if (r := run.result(name)) and r.get("finished")
    ]
    how = (
        "(`bash deploy/local/bench-task-flow.sh` after `make rabbitmq-up build`)"
        if meta["command"] == "make bench"
        else "(with RabbitMQ up and release binaries built)"
    )
    load = f"| load average (1 min) | {meta['load_start'][0]} at the start, {run.load_end[0]} at the end"
    load += f", {min(loads):.2f} to {max(loads):.2f} at the measurements |" if loads else " |"
    out = [
        "# Benchmarks: warren's task flow next to Celery",
        "",
        f"Measured by `{meta['command']}` {how}, in one run on one machine and one broker, from "
        f"{meta['started']} to {run.finished}. Every figure below comes from that run; the raw "
        "records are in [bench-results/task-flow.jsonl](bench-results/task-flow.jsonl) and the "
        "run's settings in [bench-results/task-flow-meta.json](bench-results/task-flow-meta.json). "
        "The operator's benchmarks (the last two sections) are part of `make bench` too; their "
        "figures come from separate runs on the same machine and are not compared with the task "
        "flow's" + (f" (finished: {', '.join(times)})" if times else "") + ".",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {meta['cpus']} CPUs ({meta['cpu_model']}), Linux {meta['kernel']} |",
        f"| broker | RabbitMQ {meta['rabbitmq']} (Erlang {meta['erlang']}) on 127.0.0.1 |",
        (
            f"| warren | `target/release` binaries, {meta['rustc']}, commit {meta['git_commit']}"
            f"{' plus uncommitted changes' if meta['git_dirty'] else ''} |"
        ),
        f"| Celery | {meta['celery']} (venv `.local/venv-celery`, Python {meta.get('python', '?')}) |",
        load,
    ]
    if run.failures:
        out.append(f"| **failed measurements** | {run.failures} (see the run's output) |")
    return out + ["", *settings(meta), ""]


def settings(meta):
    celery = meta.get("celery_settings")
    if celery:
        celery_text = (
            "Celery's settings, read from `protocol/celery/bench_app.py`'s configuration by the "
            f"run: `worker_prefetch_multiplier` {celery['worker_prefetch_multiplier']}, "
            f"`task_acks_late` {celery['task_acks_late']}, `result_backend` "
            f"`{celery['result_backend']}`, `result_persistent` {celery['result_persistent']}, "
            f"`confirm_publish` {celery['confirm_publish']}"
        )
    else:
        celery_text = "Celery's settings: not recorded in this run's meta file"
    return [
        (
            "Settings (configured, not measured), the same for both systems: the same broker, the "
            "same task plan (`warren-dispatcher plan --tasks N`: names, queues, durations in whole "
            "milliseconds, order), task messages persistent (delivery mode 2) and published with "
            "publisher confirms, results persistent in a durable reply queue and published with "
            f"confirms. {celery_text}; its workers run the prefork pool with `-c 1 --without-gossip "
            "--without-mingle --without-heartbeat`. warren's worker publishes the result, waits for "
            "its confirm, and only then acks the task (prefetch = concurrency)."
        )
    ]


def seed_cells(run):
    """(system, workers, tasks) -> (median run, its efficiency, all efficiencies, problems)."""
    cells = {}
    for workers in (1, 3):
        for n in SEED_COUNTS:
            plan = run.plan(f"warren-{n}.json")
            for system in ("warren", "celery"):
                rs = run.runs(
                    phase="seed",
                    system=system,
                    workers_per_queue=workers,
                    collect="concurrent",
                    tasks=n,
                )
                m = median_run(rs)
                if m is None or plan is None:
                    continue
                problems = sum(
                    r.get("lost", 0) + r.get("failed", 0) + r.get("unpublished", 0) for r in rs
                )
                cells[(system, workers, n)] = (
                    m,
                    efficiency(m, plan, workers),
                    [efficiency(r, plan, workers) for r in rs],
                    problems,
                )
    return cells


def seed_section(run, cells):
    out = [
        "## The seed's table: waiting tasks, concurrent collection",
        "",
        (
            "Tasks alternate task_a/task_b (queue_a/queue_b); each worker runs one task at a time. "
            f"Median of {run.meta['reps']} runs per cell (the efficiency range of the runs in "
            "brackets). *Efficiency* = tasks/s / ideal tasks/s, the ideal from the plan: per queue "
            "max(sum of durations / workers, longest task), the slowest queue deciding. *FIFO bound* "
            "is the efficiency of a perfect dispatcher with zero overhead that hands each queue's "
            "tasks out in order to whichever worker is free first."
        ),
        "",
        (
            "| workers/queue | tasks | ideal tasks/s | FIFO bound | warren tasks/s | warren efficiency | "
            "Celery tasks/s | Celery efficiency | warren p50 / p95 latency ms | Celery p50 / p95 ms |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workers in (1, 3):
        for n in SEED_COUNTS:
            plan = run.plan(f"warren-{n}.json")
            if plan is None:
                continue
            row = [
                str(workers),
                str(n),
                f"{n / ideal_wall(plan, workers):.1f}",
                f"{ideal_wall(plan, workers) / fifo_wall(plan, workers):.3f}",
            ]
            lat = []
            for system in ("warren", "celery"):
                cell = cells.get((system, workers, n))
                if cell is None:
                    row += ["n/a", "n/a"]
                    lat.append("n/a")
                    continue
                m, eff, effs, problems = cell
                flag = f" ({problems} lost/failed)" if problems else ""
                row += [
                    fmt(m["tasks_per_s"]) + flag,
                    f"**{eff:.3f}** ({min(effs):.3f}-{max(effs):.3f})",
                ]
                lat.append(f"{m['latency_ms']['p50']:.0f} / {m['latency_ms']['p95']:.0f}")
            out.append("| " + " | ".join(row + lat) + " |")
    out.append("")
    spread = [
        f"- {system}, {n} tasks: " + " ".join(f"{k}:{v}" for k, v in cell[0]["per_worker"].items())
        for system in ("warren", "celery")
        for n in SEED_COUNTS
        if (cell := cells.get((system, 3, n)))
    ]
    if spread:
        out += ["Tasks per worker in the median three-worker runs:", "", *spread, ""]
    return out


def sequential_section(run, cells):
    out = [
        "## Sequential collection (the seed's bottleneck) next to concurrent",
        "",
        (
            "One worker per queue. *Sequential* sends a task, blocks on its result, then sends the "
            "next (warren: `load-test --collect sequential`; Celery: `send_task(...).get()`): one "
            "task in flight at a time. *Concurrent* is the median run above."
        ),
        "",
        (
            "| tasks | ideal tasks/s | warren sequential | warren concurrent | Celery sequential | "
            "Celery concurrent |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for n in SEED_COUNTS:
        plan = run.plan(f"warren-{n}.json")
        if plan is None:
            continue
        row = [str(n), f"{n / ideal_wall(plan, 1):.1f}"]
        for system in ("warren", "celery"):
            seq = median_run(
                run.runs(
                    phase="seed", system=system, workers_per_queue=1, collect="sequential", tasks=n
                )
            )
            con = cells.get((system, 1, n))
            row.append(
                f"{fmt(seq['tasks_per_s'])} ({efficiency(seq, plan, 1):.3f})" if seq else "n/a"
            )
            row.append(f"{fmt(con[0]['tasks_per_s'])} ({con[1]:.3f})" if con else "n/a")
        out.append("| " + " | ".join(row) + " |")
    return out + ["", "Tasks/s, efficiency in brackets.", ""]


SYSTEMS = {"warren": "warren", "celery": "Celery"}


def summary_section(run, cells, f):
    lines = [seed_summary(run, cells, workers) for workers in (1, 3)]
    overhead = median(r.get("worker_overhead_ms") for r in run.runs(phase="seed", system="warren"))
    if overhead is not None:
        lines.append(
            f"- warren's workers reported run times {overhead:.1f} ms above the planned "
            "durations (median over its seed runs of the mean per task)."
        )
    lines.append(sequential_summary(run))
    if f["w"]:
        lines.append(
            f"- No work: warren {fmt(f['w'], 0)} round trips/s, {fmt(f['r_bare'], 2)} of the "
            f"bare echo's {fmt(f['e'], 0)}/s and {fmt(f['r_format'], 2)} of the Celery-format "
            f"echo's {fmt(f['ecf'], 0)}/s; {ratio(f['w'], f['c'], 1)}x Celery's "
            f"{fmt(f['c'], 0)}/s (Celery published {fmt(f['pub'], 0)} tasks/s)."
        )
    lines.append(cpu_summary(run.runs(phase="cpu")))
    return ["## Summary of the measurements", "", *[line for line in lines if line], ""]


def seed_summary(run, cells, workers):
    """Efficiencies of one worker count, and for more than one the FIFO bounds."""
    effs = {
        system: [c[1] if (c := cells.get((system, workers, n))) else None for n in SEED_COUNTS]
        for system in SYSTEMS
    }
    if not any(effs["warren"]):
        return ""
    per_queue = "1 worker" if workers == 1 else f"{workers} workers"
    text = (
        f"- {per_queue} per queue, concurrent, at {'/'.join(map(str, SEED_COUNTS))} tasks: "
        "efficiency " + "; ".join(f"{SYSTEMS[s]} {joined(e)}" for s, e in effs.items())
    )
    plans = [run.plan(f"warren-{n}.json") for n in SEED_COUNTS]
    if workers > 1 and all(plans):
        fifo = [ideal_wall(p, workers) / fifo_wall(p, workers) for p in plans]
        reached = [e / b if e else None for e, b in zip(effs["warren"], fifo, strict=True)]
        text += f"; FIFO bound {joined(fifo)}; warren / FIFO bound {joined(reached)}"
    return text + "."


def sequential_summary(run):
    plans = [run.plan(f"warren-{n}.json") for n in SEED_COUNTS]
    if not all(plans):
        return ""
    parts = []
    for system, name in SYSTEMS.items():
        runs = [
            median_run(run.runs(phase="seed", system=system, collect="sequential", tasks=n))
            for n in SEED_COUNTS
        ]
        if any(runs):
            effs = [efficiency(r, p, 1) if r else None for r, p in zip(runs, plans, strict=True)]
            parts.append(f"{name} {joined(effs, 2)}")
    return f"- Sequential collection: efficiency {'; '.join(parts)}." if parts else ""


def cpu_summary(cpu):
    cpu = sorted(cpu, key=lambda r: r["workers"])
    if len(cpu) < 2 or not all(r.get("hashes_per_s") and r.get("tasks_per_s") for r in cpu):
        return ""
    steps = list(itertools.pairwise(cpu))
    text = "- CPU-bound: " + "; ".join(
        f"{a['workers']} -> {b['workers']} workers: hashes/s x{b['hashes_per_s'] / a['hashes_per_s']:.2f}, "
        f"tasks/s x{b['tasks_per_s'] / a['tasks_per_s']:.2f}"
        for a, b in steps
    )
    cores = [r["worker_cpu_s"] / r["wall_s"] if r.get("worker_cpu_s") else None for r in cpu]
    if all(cores):
        text += "; the workers got " + joined(cores, 2) + " cores"
    return text + "."


def reproduce_section(run):
    meta = run.meta
    return [
        "## Reproduce",
        "",
        "```bash",
        (
            "make bench        # rabbitmq-up, build, the operator benchmarks, then "
            "deploy/local/bench-task-flow.sh"
        ),
        "```",
        "",
        (
            f"Knobs (environment): `BENCH_REPS` ({meta['reps']}), `BENCH_NOWORK_TASKS` "
            f"({meta['nowork_tasks']}), `BENCH_CELERY_NOWORK_TASKS` ({meta['celery_nowork_tasks']}), "
            f"`BENCH_NOWORK_CONCURRENCY` ({meta['nowork_concurrency']}), `BENCH_CPU_TASKS` "
            f"({meta['cpu_tasks']}); the values in brackets are this run's. Worker logs go to "
            "`.local/bench/`."
        ),
        "",
    ]
