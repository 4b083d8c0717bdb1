"""The seed's Celery app with warren's durability settings, for the benchmark.

warren confirms every publish (tasks and results) and publishes results as
persistent messages to a durable reply queue. Celery's defaults do neither
(no publisher confirms; rpc:// results are transient), so a fair comparison
turns both on, for the client and for the workers:

    celery -A bench_app worker -Q queue_a -c 1 ...
    python bench_client.py --plan plan.json

Everything else stays at Celery's defaults: prefork pool, prefetch multiplier 4,
tasks acked when they start (acks_late off), rpc:// results.
"""

from celery_app import app, task_a, task_b  # noqa: F401  (registers the tasks)

app.conf.update(
    # Wait for the broker's confirm of every publish, as warren does.
    broker_transport_options={"confirm_publish": True},
    # rpc:// results with delivery mode 2 (the reply queue is durable already).
    result_persistent=True,
)
