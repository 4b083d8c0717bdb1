"""The report's sections on the no-work and CPU-bound runs and on the operator's
benchmarks (see bench_render.py)."""

from bench_figures import efficiency, fmt, median, median_run, ratio


def nowork_figures(run):
    """The no-work runs and their medians; ratios are medians of per-run ratios."""
    f = {
        system: run.runs(phase="nowork", system=system)
        for system in ("echo", "echo-celery-format", "warren", "celery")
    }

    def paired(echo):
        return median(
            [
                w["tasks_per_s"] / e["round_trips_per_s"]
                for w, e in zip(f["warren"], f[echo])
                if w.get("tasks_per_s") and e.get("round_trips_per_s")
            ]
        )

    return {
        **f,
        "e": median(r["round_trips_per_s"] for r in f["echo"]),
        "ecf": median(r["round_trips_per_s"] for r in f["echo-celery-format"]),
        "w": median(r["tasks_per_s"] for r in f["warren"]),
        "c": median(r["tasks_per_s"] for r in f["celery"]),
        "pub": median(c["tasks"] / c["publish_s"] for c in f["celery"] if c.get("publish_s")),
        "r_bare": paired("echo"),
        "r_format": paired("echo-celery-format"),
    }


def nowork_section(run, f):
    meta, echo = run.meta, (f["echo"] or [{}])[0]
    window = f" --window {meta['nowork_window']}" if meta.get("nowork_window") else ""
    celery = meta.get("celery_settings") or {}
    out = [
        "## Tasks that do no work: round trips per second",
        "",
        "One client, one worker (or responder) per queue, requests alternating over two queues.",
        "",
        (
            f"- **warren**: `warren-worker --concurrency {meta['nowork_concurrency']}` on queue_a and on "
            f"queue_b; `warren-dispatcher load-test --no-work --tasks {meta['nowork_tasks']}{window}`."
        ),
        (
            "- **broker ceiling**: `dispatcher/examples/echo_ceiling/`, a bare lapin echo: one client "
            f"connection sends {echo.get('requests', 'n/a')} persistent, confirmed requests of "
            f"{echo.get('request_bytes', 'n/a')} bytes (at most {echo.get('window', 'n/a')} in flight) "
            f"over {echo.get('queues', 'n/a')} durable queues; one responder connection per queue "
            f"consumes with prefetch {echo.get('prefetch', 'n/a')} and manual acks, publishes a "
            f"{echo.get('reply_bytes', 'n/a')}-byte persistent reply to the durable reply queue, waits "
            "for its confirm, then acks; the client acks replies."
        ),
        (
            "- **ceiling, Celery's format**: the same echo with `--celery-format`: the request is a "
            "warren task message (Celery protocol v2 headers and a JSON body, through the queue's "
            "direct exchange) and the reply an `rpc://` result with warren's result headers, both "
            "built once and reused."
        ),
        (
            f"- **Celery**: one worker per queue (`-c 1`, prefetch multiplier "
            f"{celery.get('worker_prefetch_multiplier', 'n/a')}), `bench_client.py` sending "
            f"{meta['celery_nowork_tasks']} tasks with `send_task`, then collecting them with "
            "`iter_native`."
        ),
        "",
        "Runs alternate: echo, echo in Celery's format, warren, then the next round.",
        "",
        (
            "| run | ceiling rt/s | ceiling, Celery format rt/s | warren rt/s | warren / ceiling | "
            "warren / Celery-format ceiling | Celery rt/s | Celery publishes/s |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    systems = ("echo", "echo-celery-format", "warren", "celery")
    for i in range(max(len(f[s]) for s in systems)):
        e, ecf, w, c = (f[s][i] if i < len(f[s]) else {} for s in systems)
        e, ecf, wv = e.get("round_trips_per_s"), ecf.get("round_trips_per_s"), w.get("tasks_per_s")
        pub = c["tasks"] / c["publish_s"] if c.get("publish_s") else None
        out.append(
            f"| {i + 1} | {fmt(e, 0)} | {fmt(ecf, 0)} | {fmt(wv, 0)} | {ratio(wv, e)} | "
            f"{ratio(wv, ecf)} | {fmt(c.get('tasks_per_s'), 0)} | {fmt(pub, 0)} |"
        )
    out += [
        (
            f"| **median** | **{fmt(f['e'], 0)}** | **{fmt(f['ecf'], 0)}** | **{fmt(f['w'], 0)}** | "
            f"**{fmt(f['r_bare'], 2)}** | **{fmt(f['r_format'], 2)}** | **{fmt(f['c'], 0)}** | "
            f"{fmt(f['pub'], 0)} |"
        ),
        "",
        (
            "The ratios' medians are medians of the per-run ratios (each warren run against the echo "
            "runs just before it), not ratios of the medians."
        ),
        "",
    ]
    problems = sum(
        r.get("lost", 0) + r.get("failed", 0) + r.get("unpublished", 0)
        for r in f["warren"] + f["celery"]
    )
    nacked = sum(r.get("nacked", 0) for r in f["echo"] + f["echo-celery-format"])
    out += [f"Lost or failed tasks: {problems}; nacked echo requests: {nacked}.", ""]
    if m := median_run(f["warren"]):
        out += [
            (
                f"warren's median run: latency p50 {m['latency_ms']['p50']:.0f} ms, p95 "
                f"{m['latency_ms']['p95']:.0f} ms, duplicates {m['duplicates']}."
            ),
            "",
        ]
    return out


def cpu_section(run):
    cpu = sorted(run.runs(phase="cpu"), key=lambda r: r["workers"])
    plan = run.plan("warren-cpu.json")
    counts = ", ".join(str(r["workers"]) for r in cpu) or "n/a"
    span = (
        f"{min(t['seconds'] for t in plan):g}-{max(t['seconds'] for t in plan):g} s"
        if plan
        else "n/a"
    )
    out = [
        f"## CPU-bound tasks: {counts} workers on {run.meta['cpus']} CPUs",
        "",
        (
            f"{run.meta['cpu_tasks']} tasks on queue_a (`load-test --cpu --mix 1:0`), each hashing "
            f"SHA-256 for its planned duration ({span} in this plan) on a blocking thread, workers at "
            "concurrency 1. A task hashes for a fixed time, not a fixed amount of work: tasks/s "
            "counts tasks, hashes/s the work done."
        ),
        "",
        (
            "| workers | tasks/s | efficiency (tasks) | hashes/s | hashes/s vs 1 worker | "
            "hashes per task | cores the workers got |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    base = cpu[0].get("hashes_per_s") if cpu else None
    for r in cpu:
        h = r.get("hashes_per_s")
        eff = efficiency(r, plan, r["workers"]) if plan else None
        per_task = h / r["tasks_per_s"] if h and r["tasks_per_s"] else None
        cores = r["worker_cpu_s"] / r["wall_s"] if r.get("worker_cpu_s") and r["wall_s"] else None
        out.append(
            f"| {r['workers']} | {fmt(r['tasks_per_s'])} | {fmt(eff, 3)} | "
            f"{fmt(h / 1e6 if h else None, 2)} M | {ratio(h, base)}x | "
            f"{fmt(per_task / 1e3 if per_task else None, 0)} k | {fmt(cores, 2)} |"
        )
    return out + [
        "",
        (
            "*Efficiency (tasks)*: tasks/s over the plan's ideal on that many workers, as in the "
            "seed's table. *Cores the workers got*: CPU time of the worker processes during the run "
            "(from `/proc`), over its wall time."
        ),
        "",
    ]


def reaction_section(run):
    r = run.result("operator-reaction.json")
    if not r:
        return []
    interval = run.meta.get("broker_collect_statistics_interval_ms")
    stats = (
        f"broker statistics interval {interval / 1000:g} s (configured: "
        f"`collect_statistics_interval` in `{run.meta.get('broker_config')}`)"
        if interval is not None
        else "broker statistics interval not recorded"
    )
    return [
        "## Operator: reaction to a new backlog",
        "",
        (
            "A backlog appears -> the operator patches `/scale`; "
            f"{r['trials']} trials, poll interval {r['poll_interval_s']:g} s (configured by the "
            f"test), {stats}, against the local control plane (`cargo test --release -p "
            "warren-operator --test bench -- --ignored bench_reaction_time`, run by `make bench` before "
            "the task-flow run; raw samples in "
            "[bench-results/operator-reaction.json](bench-results/operator-reaction.json))."
        ),
        "",
        "| p50 | p95 | min | max | target p95 |",
        "|---|---|---|---|---|",
        (
            f"| {r['p50_s']:.2f} s | {r['p95_s']:.2f} s | {r['min_s']:.2f} s | {r['max_s']:.2f} s "
            "| <= 2.5 s |"
        ),
        "",
    ]


def scale_section(run):
    r = run.result("operator-scale.json")
    if not r:
        return []
    out = [
        f"## Operator: {r['taskqueues']:,} TaskQueues on one broker",
        "",
        (
            f"{r['taskqueues']:,} TaskQueues over {r['queues']:,} queues in one vhost, each scaling its "
            "own Deployment (`cargo test --release -p warren-operator --test bench -- --ignored "
            "bench_thousand_taskqueues`, run by `make bench`; "
            "[bench-results/operator-scale.json](bench-results/operator-scale.json)). Measured over a "
            f"{r['window_s']:.0f} s window after every TaskQueue was decided once; the decisions are "
            "read per TaskQueue from the operator's debug log."
        ),
        "",
        "| measure | result | target |",
        "|---|---|---|",
        (
            f"| management API requests per 5 s interval | "
            f"{r['management_requests_per_5s_interval']:.1f} | <= 2 |"
        ),
    ]
    decided = r.get("taskqueues_decided_in_window")
    if decided is not None:
        out += [
            (
                f"| TaskQueues decided in the {r['window_s']:.0f} s window | {decided:,} (each at least "
                f"{r['fewest_decisions_of_a_taskqueue_in_window']} times) | {r['taskqueues']:,} |"
            ),
            (
                f"| largest gap between two decisions of one TaskQueue | "
                f"{r['max_gap_between_decisions_s']:.2f} s (p99 {r['p99_gap_between_decisions_s']:.2f} s) "
                "| one 5 s interval |"
            ),
        ]
    return out + [
        f"| reconciliations per 5 s interval | {r['reconciles_per_5s_interval']:.0f} | |",
        f"| operator peak RSS | {r['operator_peak_rss_mib']:.1f} MiB | <= 64 MiB |",
        f"| all TaskQueues decided once after start | {r['all_decided_once_in_s']:.0f} s | |",
        "",
    ]


def scale_down_section(run):
    r = run.result("scale-down.json")
    if not r:
        return []
    plan = r["plan"]
    out = [
        "## Scale-down: IdleFirst against Any",
        "",
        (
            f"The plan of test-e2e step 4 on real worker pods (the local cluster's real node), "
            f"{r['reps']} scale-downs per policy, alternating: 3 workers take 3 tasks of "
            f"{plan['short_s']:g} s, 3 more start and take 3 tasks of {plan['long_s']:g} s (workers drain "
            f"for {plan['grace_s']:g} s after SIGTERM); when the short tasks end the backlog asks for "
            "fewer pods while the 3 newest are busy (`deploy/local/bench-scale-down.sh`, run by "
            "`make bench`; [bench-results/scale-down.json](bench-results/scale-down.json)). "
            "Interrupted = the broker's redeliveries; wasted = the long tasks' time beyond their "
            "own duration; delay = from the last short task's result (from then on the 3 old "
            "workers are idle) to the first replica change, negative when the scale-down came "
            "before it."
        ),
        "",
        "| policy | scale-downs | interrupted per scale-down | lost | duplicates | wasted task-seconds per scale-down | delays |",
        "|---|---|---|---|---|---|---|",
    ]
    for policy in ("IdleFirst", "Any"):
        p = r.get(policy)
        if not p:
            continue
        delays = ", ".join(f"{d:+.1f} s" for d in p["scale_down_delays_s"]) or "n/a"
        out.append(
            f"| {policy} | {p['runs']} | {p['interrupted_per_scale_down']:g} ({p['interrupted']} of "
            f"{p['tasks']} tasks) | {p['lost']} | {p['duplicates']} | "
            f"{p['wasted_task_s_per_scale_down']:g} | {delays} |"
        )
    out.append("")
    if (run.results_dir / "scale-down.svg").exists():
        out += [
            (
                "The first run of each policy, as bench-scale-down.sh drew it "
                "(`scale_down_chart.py`, from the runs' `timeline` in scale-down.json):"
            ),
            "",
            "![IdleFirst against Any: replicas and each task over one run](bench-results/scale-down.svg)",
            "",
        ]
    notes = []
    early = [d for d in (r.get("Any") or {}).get("scale_down_delays_s", []) if d < 0]
    if early:
        notes.append(
            f"Any scaled down before any worker was idle in {len(early)} of "
            f"{r['Any']['runs']} runs: its floor, the consumers holding deliveries, takes the "
            "consumer count from the statistics listing, which had not yet counted the 3 new "
            "workers"
        )
    idle = r.get("IdleFirst") or {}
    if idle.get("scale_down_delay_median_s") is not None:
        notes.append(
            f"IdleFirst scaled down {idle['scale_down_delay_median_s']:.1f} s (median) after the "
            "old workers became idle, against a target of one poll interval (1 s here): the "
            "channel statistics it reads lag the broker by several seconds"
        )
    reads = r.get("operator_consumer_reads")
    if reads:
        notes.append(
            f"the operator counted {reads} consumer reads (2 requests each: consumers and "
            f"channels), {r['operator_consumer_read_mean_s'] * 1000:.1f} ms each on average (its "
            "own histogram)"
        )
    if notes:
        text = "; ".join(notes)
        out += [text[0].upper() + text[1:] + ".", ""]
    return out
