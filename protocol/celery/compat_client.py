"""A Celery client calling warren workers; prints one JSON line per check.

Expects a warren worker on CELERY_QUEUE_A. Exits non-zero when a check fails.
"""

import json
import sys

from celery import signature

from celery_app import app


def main():
    # The seed's way: task_a.delay(...).get(), by dotted name and by short name.
    for name in ("celery_app.task_a", "task_a"):
        result = app.send_task(name, kwargs={"seconds": 0.05}).get(timeout=20)
        print(json.dumps({"check": "delay-get", "task": name, "result": result}))
    # A failure in the worker is re-raised in Python with its type.
    try:
        app.send_task("task_a", kwargs={"seconds": 0, "fail": -1}).get(timeout=20)
    except Exception as exc:  # noqa: BLE001 - we report whatever was raised
        print(json.dumps({"check": "failure", "type": type(exc).__name__, "message": str(exc)}))
    else:
        sys.exit("a failing task did not raise")
    # An unknown task comes back as Celery's own NotRegistered.
    try:
        app.send_task("task_unknown").get(timeout=20)
    except Exception as exc:  # noqa: BLE001
        print(
            json.dumps(
                {"check": "unknown", "type": type(exc).__name__, "module": type(exc).__module__}
            )
        )
    else:
        sys.exit("an unknown task did not raise")
    # Concurrent collection through Celery's own group join.
    group = [signature("task_a", kwargs={"seconds": 0.02}, app=app) for _ in range(10)]
    results = [r.get(timeout=20) for r in [s.delay() for s in group]]
    print(json.dumps({"check": "many", "count": len(results)}))


if __name__ == "__main__":
    main()
