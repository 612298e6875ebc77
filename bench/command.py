"""`make bench` (command part): how soon a `command` agent's process starts.

One worker (`meta-agent worker start`, sandboxed as it is by default) waits on the queue; a
client creates tasks one after the other for an agent whose command is `date +%s.%N`, so
the process prints the wall-clock time it ran at, and follows each to its end over its
event stream (as `exec --follow` does). For each task:

- claim → process: the task's `started_at` (stamped by the server in the claim's
  transaction) to the time `date` printed;
- call → process: the client's clock just before `POST /tasks` to the same.

Both include `date`'s own start (an exec, the dynamic loader and its locale: ~1 ms on an
idle machine), so the moment the process starts is earlier than measured, never later.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from typing import Any

import httpx

__all__ = ["command_start"]

AGENT = {"name": "clock", "runtime": "command", "command": ["date", "+%s.%N"], "default_queue": "bench-cmd"}


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def _wait_done(c: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """The finished task, from the end of its event stream: followed as `exec --follow`
    does, not polled (a GET every few ms competes with the claim it measures)."""
    async with asyncio.timeout(30):
        async with c.stream("GET", f"/tasks/{task_id}/stream") as r:
            r.raise_for_status()
            kind = ""
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind == "end":
                    return json.loads(line[5:])
    raise SystemExit(f"the stream of task {task_id} ended without its end")


async def measure(base: str, samples: int) -> dict[str, float]:
    claim_ms: list[float] = []
    call_ms: list[float] = []
    async with httpx.AsyncClient(base_url=base + "/api/v1", timeout=60) as c:
        (await c.post("/worker-queues", json={"name": "bench-cmd"})).raise_for_status()
        (await c.post("/agents", json=AGENT)).raise_for_status()
        for i in range(samples + 5):
            t0 = time.time()
            r = await c.post("/tasks", json={"agent": "clock", "prompt": f"c{i}"})
            r.raise_for_status()
            task = await _wait_done(c, r.json()["id"])
            if task["status"] != "completed":
                raise SystemExit(f"the clock task ended {task['status']}: {task.get('error')}")
            ran = float(task["result"]["output"].strip())
            if i >= 5:  # the first ones start the worker's launch server and warm its caches
                started = datetime.fromisoformat(task["started_at"]).timestamp()
                claim_ms.append((ran - started) * 1000)
                call_ms.append((ran - t0) * 1000)
    own = date_own_start(samples)
    return {
        # What `date` itself adds, spawned here from Python (a fork and exec too, so if
        # anything more than in the sandbox): the process started at most this much earlier.
        "date_own_start_p50_ms": round(own, 2),
        "claim_to_process_p50_ms": round(_pct(claim_ms, 50), 2),
        "claim_to_process_p99_ms": round(_pct(claim_ms, 99), 2),
        "call_to_process_p50_ms": round(_pct(call_ms, 50), 2),
        "call_to_process_p99_ms": round(_pct(call_ms, 99), 2),
        "samples": len(claim_ms),
    }


def date_own_start(samples: int) -> float:
    """p50 of the time from spawning `date +%s.%N` to the time it prints, in ms."""
    own: list[float] = []
    for _ in range(samples):
        t0 = time.time()
        out = subprocess.run(AGENT["command"], capture_output=True, text=True, check=True).stdout
        own.append((float(out) - t0) * 1000)
    return _pct(own, 50)


def command_start(base: str, samples: int) -> dict[str, float]:
    """Start one worker on `bench-cmd`, measure, stop it."""
    from bench.bench import ROOT, env, settled, stop, wait_for_workers

    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "start", "--queue", "bench-cmd", "--concurrency", "1"],
        env=env(META_AGENT_URL=base, META_AGENT_WORKSPACE_ROOT=tempfile.mkdtemp()),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        asyncio.run(wait_for_workers(base, 1, queue="bench-cmd"))
        asyncio.run(settled(base))  # a new PostgreSQL server's first 2 s (bench.bench.settled)
        return asyncio.run(measure(base, samples))
    finally:
        stop(worker)


def main() -> None:
    """`python -m bench.command [--backends sqlite,postgresql] [--samples N]`: this phase alone."""
    import argparse
    import json
    from pathlib import Path

    from bench.bench import free_port, fresh_database, start_server, stop

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            server = start_server(fresh_database(backend, Path(tmp)), port := free_port())
            try:
                print(
                    backend, json.dumps(command_start(f"http://127.0.0.1:{port}", args.samples)), flush=True
                )
            finally:
                stop(server)


if __name__ == "__main__":
    main()
