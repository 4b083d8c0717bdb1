#!/usr/bin/env python3
"""The records of a `make bench` run, and docs/benchmarks.md rendered from them.

  bench_report.py meta --out FILE ...          the run's settings and versions
  bench_report.py record --tags JSON --records FILE    (JSON lines on stdin)
  bench_report.py cpu-time --records FILE --workers N --ticks N --hz N
  bench_report.py finish-meta --meta FILE
  bench_report.py plan-summary PLAN...         tasks, queues and durations of plans
  bench_report.py report --records FILE --meta FILE --plans DIR --out FILE

deploy/local/bench-task-flow.sh calls them in that order. Every figure in the report
comes from the records given (one JSON object per measurement), the run's meta file
and the plans the run sent; settings are labelled as configured, and nothing is
carried over from earlier runs. Efficiency is computed here the same way for warren
and Celery, from the plan both were given (ideal_wall and fifo_wall in bench_figures.py), as
dispatcher/src/load_test/bounds.rs computes it for `load-test`.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import bench_render
from bench_figures import Run, by_queue


def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


def run(*cmd, cwd=None):
    """A command's stripped output, or None when it cannot run."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=cwd)
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def management_overview():
    """The broker's /api/overview, with the management user the scripts use."""
    url = os.environ.get("WARREN_MANAGEMENT_URL", "http://127.0.0.1:15672")
    user = os.environ.get("WARREN_MANAGEMENT_USERNAME", "guest")
    password = os.environ.get("WARREN_MANAGEMENT_PASSWORD", "guest")
    request = urllib.request.Request(f"{url}/api/overview")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def broker_setting(config, key):
    """`key = value` from a rabbitmq.conf, as an int, or None."""
    path = Path(config)
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        match = re.fullmatch(rf"\s*{re.escape(key)}\s*=\s*(\d+)\s*", line)
        if match:
            return int(match.group(1))
    return None


CELERY_SETTINGS = """
import json, bench_app
conf = bench_app.app.conf
print(json.dumps({
    "worker_prefetch_multiplier": conf.worker_prefetch_multiplier,
    "task_acks_late": conf.task_acks_late,
    "result_backend": conf.result_backend,
    "result_persistent": conf.result_persistent,
    "confirm_publish": (conf.broker_transport_options or {}).get("confirm_publish", False),
}))
"""


def meta(args):
    """Writes the run's settings and versions, read from what the run uses."""
    python = str(Path(args.venv).resolve() / "bin" / "python")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    overview = management_overview()
    celery_settings = run(python, "-c", CELERY_SETTINGS, cwd=args.celery_dir)
    interval = broker_setting(args.broker_config, "collect_statistics_interval")
    status = run("git", "status", "--porcelain", "--untracked-files=no")
    record = {
        "started": now(),
        "command": args.command,
        "load_start": loadavg(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "rabbitmq": overview.get("rabbitmq_version"),
        "erlang": overview.get("erlang_version"),
        "broker_config": os.path.relpath(args.broker_config),
        "broker_collect_statistics_interval_ms": interval,
        "celery": run(
            python,
            "-c",
            "import celery, kombu; "
            "print('celery', celery.__version__ + ', kombu', kombu.__version__)",
        ),
        "celery_settings": json.loads(celery_settings) if celery_settings else None,
        "python": run(python, "-c", "import platform; print(platform.python_version())"),
        "rustc": run("rustc", "--version"),
        "git_commit": run("git", "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(status),
        "nowork_concurrency": args.nowork_concurrency,
        "nowork_tasks": args.nowork_tasks,
        "nowork_window": args.nowork_window,
        "celery_nowork_tasks": args.celery_nowork_tasks,
        "reps": args.reps,
        "cpu_tasks": args.cpu_tasks,
    }
    Path(args.out).write_text(json.dumps(record, indent=2))


def finish_meta(args):
    """Adds the end time and load average to the meta file."""
    record = json.loads(Path(args.meta).read_text())
    record["finished"] = now()
    record["load_end"] = loadavg()
    Path(args.meta).write_text(json.dumps(record, indent=2))


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
            print(
                f"   {row.get('system', '?'):7} {row.get('collect', ''):10} {count} tasks: "
                f"{rate}/s, wall {row.get('wall_s')} s, lost {row.get('lost', 0)}",
                file=sys.stderr,
            )


def cpu_time(args):
    """Adds the workers' CPU seconds to the last record, if it is the CPU run of
    `--workers` workers that has none yet."""
    path = Path(args.records)
    rows = path.read_text().splitlines()
    last = json.loads(rows[-1]) if rows else {}
    if (
        last.get("phase") == "cpu"
        and last.get("workers") == args.workers
        and "worker_cpu_s" not in last
    ):
        last["worker_cpu_s"] = round(args.ticks / args.hz, 2)
        rows[-1] = json.dumps(last)
        path.write_text("\n".join(rows) + "\n")


def plan_summary(args):
    """One line per plan file: tasks, tasks per queue, planned seconds."""
    for name in args.plans:
        plan = json.loads(Path(name).read_text())
        queues = by_queue(plan)
        per_queue = " ".join(f"{q}:{len(d)}" for q, d in sorted(queues.items()))
        seconds = [t["seconds"] for t in plan]
        span = f"{min(seconds):g}-{max(seconds):g} s" if seconds else "none"
        print(
            f"{name}: {len(plan)} tasks ({per_queue}), durations {span}, "
            f"{sum(seconds):.3f} s of work"
        )


def report(args):
    records = [
        json.loads(line) for line in Path(args.records).read_text().splitlines() if line.strip()
    ]
    record_meta = json.loads(Path(args.meta).read_text())
    text = bench_render.render(
        Run(
            records=records,
            meta=record_meta,
            plans_dir=Path(args.plans),
            results_dir=Path(args.records).parent,
            failures=args.failures,
            finished=record_meta.get("finished") or now(),
            load_end=record_meta.get("load_end") or loadavg(),
        )
    )
    Path(args.out).write_text(text)


def parser():
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="subcommand", required=True)
    rec = sub.add_parser("record", help=record.__doc__)
    rec.add_argument("--tags", required=True)
    rec.add_argument("--records", required=True)
    rec.set_defaults(run=record)
    met = sub.add_parser("meta", help=meta.__doc__)
    met.add_argument("--out", required=True)
    met.add_argument("--command", required=True)
    met.add_argument("--venv", required=True)
    met.add_argument("--celery-dir", required=True)
    met.add_argument("--broker-config", required=True)
    for name in (
        "nowork-concurrency",
        "nowork-tasks",
        "nowork-window",
        "celery-nowork-tasks",
        "reps",
        "cpu-tasks",
    ):
        met.add_argument(f"--{name}", type=int, required=True)
    met.set_defaults(run=meta)
    fin = sub.add_parser("finish-meta", help=finish_meta.__doc__)
    fin.add_argument("--meta", required=True)
    fin.set_defaults(run=finish_meta)
    cpu = sub.add_parser("cpu-time", help=cpu_time.__doc__)
    cpu.add_argument("--records", required=True)
    for name in ("workers", "ticks", "hz"):
        cpu.add_argument(f"--{name}", type=int, required=True)
    cpu.set_defaults(run=cpu_time)
    summ = sub.add_parser("plan-summary", help=plan_summary.__doc__)
    summ.add_argument("plans", nargs="+")
    summ.set_defaults(run=plan_summary)
    rep = sub.add_parser("report", help="writes the report (docs/benchmarks.md)")
    rep.add_argument("--records", required=True)
    rep.add_argument("--meta", required=True)
    rep.add_argument("--plans", required=True)
    rep.add_argument("--failures", type=int, default=0)
    rep.add_argument("--out", required=True)
    rep.set_defaults(run=report)
    return top


def main():
    args = parser().parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
