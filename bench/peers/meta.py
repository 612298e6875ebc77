"""One round of meta-agent on one store, through bench/bench.py's own phases."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import bench
from bench.peers import procstat


def run(backend: str, samples: int, tasks: int, clients: int, workers: int, slots: int) -> dict[str, Any]:
    """`meta-agent serve` and `workers` × `worker start --concurrency slots`, as `make bench`."""
    with tempfile.TemporaryDirectory() as tmp:
        url = bench.fresh_database(backend, Path(tmp))
        port = bench.free_port()
        server = bench.start_server(url, port)
        base = f"http://127.0.0.1:{port}"
        procs = []
        try:
            asyncio.run(bench.setup(base))
            d = asyncio.run(bench.dispatch(base, samples))
            procs = bench.start_workers(base, workers, slots)
            asyncio.run(bench.wait_for_workers(base, workers))
            groups = {
                "server": [server.pid],
                "workers": [p.pid for p in procs],
                "client": [os.getpid()],
            }
            if backend != "sqlite":  # SQLite runs inside the server
                groups["broker"] = procstat.roots_by_comm(procstat.read_all(), "postgres")
            before = procstat.snapshot(groups)
            t = asyncio.run(bench.load(base, url, tasks, clients=clients, on_poll=_progress(tasks)))
            after = procstat.snapshot(groups)
        finally:
            for p in [*procs, server]:
                bench.stop(p)
    return {
        "dispatch": d,
        "throughput": t,
        "cpu_ms_per_task": procstat.per_task_ms(before, after, tasks),
        "config": {"workers": workers, "slots_per_worker": slots},
    }


def _progress(n: int) -> Callable[[int], None]:
    step = max(1, n // 5)
    shown = [0]

    def on_poll(done: int) -> None:
        if done // step > shown[0]:
            shown[0] = done // step
            print(f"  throughput {done}/{n}", file=sys.stderr, flush=True)

    return on_poll
