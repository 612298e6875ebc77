"""procrastinate + PostgreSQL (LISTEN/NOTIFY), imported in the procrastinate venv only.

`procrastinate --app bench.peers.side_procrastinate.app worker ...` is the worker (flags in
bench/peers/peers.py); `python -m bench.peers.client procrastinate ...` the client.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import procrastinate

from bench.peers.driver import stamp

POOL = int(os.environ.get("BENCH_PEERS_POOL", "4"))  # the client's 8 threads get 8 connections

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get("BENCH_PEERS_PG", "postgresql://postgres@127.0.0.1:5432/procrastinate_bench"),
        min_size=POOL,
        max_size=POOL,
    )
)


@app.task(name="noop", queue="bench")
async def noop(tag: str) -> None:
    stamp(tag)


def enqueue(tag: str) -> None:
    noop.defer(tag=tag)


@contextmanager
def connected() -> Iterator[None]:
    with app.open():  # a synchronous pool of POOL connections, shared by the client threads
        yield
