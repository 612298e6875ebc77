"""Celery + Redis, in its best configuration for this protocol; imported in the celery venv only.

`celery -A bench.peers.side_celery worker ...` is the worker (flags in bench/peers/peers.py);
`python -m bench.peers.client celery ...` the client.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery

from bench.peers.driver import stamp

BROKER = os.environ.get("BENCH_PEERS_REDIS", "redis://127.0.0.1:6379/15")

app = Celery("bench_peers", broker=BROKER)
app.conf.update(
    task_acks_late=True,  # a task is acknowledged after it ran, as meta-agent's are
    task_ignore_result=True,  # no result backend
    result_backend=None,
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(tag: str) -> None:
    stamp(tag)


def enqueue(tag: str) -> None:
    noop.delay(tag)


@contextmanager
def connected() -> Iterator[None]:
    yield  # kombu connects on the first publish and pools connections per thread


def reset() -> None:
    """An empty queue: nothing left over from an earlier run."""
    import redis

    redis.Redis.from_url(BROKER).flushdb()
