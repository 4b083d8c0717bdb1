"""The seed's Celery app: task_a and task_b routed to queue_a and queue_b.

Used by warren's compatibility tests (a Celery client against warren workers, the
warren dispatcher against Celery workers) and by the side-by-side benchmark. The
tasks take the same keyword arguments as warren's demo tasks: `seconds` (wait that
long, default 0.1-0.2 s) and `cpu` (hash for that long instead of waiting).
"""

import hashlib
import os
import random
import time

from celery import Celery

BROKER = os.environ.get("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
QUEUE_A = os.environ.get("CELERY_QUEUE_A", "queue_a")
QUEUE_B = os.environ.get("CELERY_QUEUE_B", "queue_b")

app = Celery("celery_app", broker=BROKER, backend="rpc://")
app.conf.update(
    task_routes={
        "celery_app.task_a": {"queue": QUEUE_A},
        "celery_app.task_b": {"queue": QUEUE_B},
        "celery_app.fail": {"queue": QUEUE_A},
        # Names a warren worker serves too: the short names, and one it does not.
        "task_a": {"queue": QUEUE_A},
        "task_b": {"queue": QUEUE_B},
        "task_unknown": {"queue": QUEUE_A},
    },
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Puts the worker's name into each result, as warren's workers do.
    result_extended=True,
    broker_connection_retry_on_startup=True,
)


def _work(seconds, cpu):
    if seconds is None:
        seconds = random.uniform(0.1, 0.2)
    if cpu:
        end = time.perf_counter() + seconds
        digest, hashes = b"\0" * 32, 0
        while time.perf_counter() < end:
            for _ in range(256):
                digest = hashlib.sha256(digest).digest()
            hashes += 256
        return {"mode": "cpu", "seconds": seconds, "hashes": hashes}
    time.sleep(seconds)
    return {"mode": "wait", "seconds": seconds}


@app.task(name="celery_app.task_a")
def task_a(seconds=None, cpu=False):
    return _work(seconds, cpu)


@app.task(name="celery_app.task_b")
def task_b(seconds=None, cpu=False):
    return _work(seconds, cpu)


@app.task(name="celery_app.fail")
def fail():
    raise ValueError("boom from celery")
