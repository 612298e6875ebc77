"""`python -m bench.calls`: the Python calls the control plane makes per task, counted.

Throughput on a 2-core box is bounded by the server's CPU per task, and timings on a shared
box move by ±15 % from one run to the next (bench/README.md): too much to see a 3 % saving.
The number of Python function calls the server makes for the same requests moves by less
than 1 % and falls with its CPU, so a change to the hot path is judged here first and by
`make bench-peers` after.

The real app on a real socket (uvicorn, in a thread of this process) and a real store; the
requests are the SDK's, as the bench's clients and workers make them:
- create: `POST /tasks` with no claim parked (the throughput phase's creations);
- exchange: a worker's round under load, 4 reports and a claim of 4 in one call, per task;
- hand-off: a creation while the worker's claim is parked (the dispatch phase), both calls.
Only calls made on the server's thread are counted (sys.setprofile there), the event loop's
own included; the SQL itself runs in C and is not a Python call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from bench import bench
from board_api.state import state_of
from cli.serve import http_protocol
from kernel import loop
from sdk.client import AsyncControlPlaneClient
from store.handoff import handoffs


class _Counter:
    """Counts Python calls ('call' profile events) on the thread it is installed on."""

    def __init__(self) -> None:
        self.calls = 0
        self.by_function: Counter[str] | None = None  # with --top: calls per function

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            self.calls += 1
            if self.by_function is not None:
                code = frame.f_code
                where = code.co_filename.rsplit("site-packages/", 1)[-1].removeprefix(str(bench.ROOT) + "/")
                self.by_function[f"{where}:{code.co_name}"] += 1


class _Server:
    def __init__(self, url: str, workspace: Path, top: int) -> None:
        from cli.compose import create_app
        from kernel.settings import Settings

        port = bench.free_port()
        self.base = f"http://127.0.0.1:{port}"
        settings = Settings(  # type: ignore[call-arg]
            database_url=url, port=port, embedded_worker=False, workspace_root=str(workspace)
        )
        self.app = create_app(settings)
        # As `meta-agent serve` runs it: its HTTP protocol, and its loop (below).
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_level="warning", http=http_protocol()
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, set once it runs
        self.counter = _Counter()
        self.top = top
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve()

        loop.run(serve())

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise SystemExit("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.app.state.drain()
        self.server.should_exit = True
        self.thread.join(30)

    def parked(self) -> int:
        """Claims parked on the bench queue (read across threads: an int, for a wait)."""
        return handoffs(state_of(self.app).db).parked("bench")

    def _profile(self, on: bool) -> None:
        done = threading.Event()

        def flip() -> None:
            sys.setprofile(self.counter if on else None)
            done.set()

        assert self.loop is not None
        self.loop.call_soon_threadsafe(flip)
        if not done.wait(10):
            raise SystemExit("the server's loop did not answer")

    async def count(self, what: str, work: Callable[[], Awaitable[int]]) -> float:
        """Python calls on the server's thread per unit `work` returns it did."""
        self.counter.calls = 0
        if self.top:
            self.counter.by_function = Counter()
        self._profile(True)
        try:
            units = await work()
        finally:
            self._profile(False)
        if self.counter.by_function is not None:
            print(f"{what}: calls per unit, by function", file=sys.stderr)
            for name, k in self.counter.by_function.most_common(self.top):
                print(f"  {k / units:7.1f}  {name}", file=sys.stderr)
        return self.counter.calls / units

    async def cpu(self, work: Callable[[], Awaitable[int]]) -> float:
        """µs of the server thread's CPU per unit `work` returns it did (no profiler on)."""
        assert self.thread.ident is not None
        clock = time.pthread_getcpuclockid(self.thread.ident)
        t0 = time.clock_gettime(clock)
        units = await work()
        return (time.clock_gettime(clock) - t0) * 1e6 / units


async def _creates(c: AsyncControlPlaneClient, n: int) -> int:
    for i in range(n):
        await c.executions.create(agent="noop", prompt=f"c{i}")
    return n


async def _claimed(c: AsyncControlPlaneClient, n: int) -> list[Any]:
    out = await c.worker.exchange("bench", "calls", [], n, 0)
    assert len(out.tasks) == n, f"claimed {len(out.tasks)} of {n}"
    return list(out.tasks)


def _reports(items: list[Any]) -> list[dict[str, Any]]:
    return [{"id": t.task.id, "token": t.token, "result": {"output": "ok"}} for t in items]


async def _rounds(c: AsyncControlPlaneClient, rounds: int, batch: int) -> int:
    """Exchanges of `batch` reports and a claim of `batch`, as a busy worker's; the tasks
    reported in full rounds (the pending ones, created by the phase before, must suffice)."""
    held = await _claimed(c, batch)
    for _ in range(rounds):
        if len(held) < batch:
            raise SystemExit(f"the queue ran dry: {len(held)} of {batch} claimed")
        out = await c.worker.exchange("bench", "calls", _reports(held), batch, 0)
        assert all(r.status == "completed" for r in out.reports), out.reports
        held = list(out.tasks)
    await c.worker.exchange("bench", "calls", _reports(held), 0, 0)
    return rounds * batch


async def _handoffs(
    c: AsyncControlPlaneClient, worker: AsyncControlPlaneClient, n: int, parked_now: Callable[[], int]
) -> int:
    for i in range(n):
        parked = asyncio.create_task(worker.worker.exchange("bench", "calls", [], 1, 30))
        deadline = time.monotonic() + 10
        while not parked_now():  # the long-poll reaches the server and parks
            if time.monotonic() > deadline:
                raise SystemExit("the worker's claim did not park")
            await asyncio.sleep(0.0005)
        await c.executions.create(agent="noop", prompt=f"h{i}")
        (item,) = (await parked).tasks
        await worker.worker.exchange("bench", "calls", _reports([item]), 0, 0)
    return n


PHASES = ("create", "exchange_per_task", "handoff_round")


async def measure(
    backend: str, n: int, batch: int, top: int = 0, repeat: int = 3, phases: tuple[str, ...] = PHASES
) -> dict[str, float]:
    """Calls per unit of each phase (`{phase}_calls`) and, with `repeat`, the least of that
    many passes' server CPU µs per unit (`{phase}_cpu_us`)."""
    with tempfile.TemporaryDirectory() as tmp:
        url = bench.fresh_database(backend, Path(tmp), "meta_agent_calls")
        with _Server(url, Path(tmp) / "ws", top) as srv:
            await bench.setup(srv.base)
            async with (
                AsyncControlPlaneClient(srv.base, timeout=60) as c,
                AsyncControlPlaneClient(srv.base, timeout=60) as w,
            ):
                # Warm: statement caches, the agent's route; and every creation phase leaves
                # `batch` more pending than its exchange phase takes (its first claim's).
                await _creates(c, 16 * batch + (1 + repeat) * batch)
                await _rounds(w, 15, batch)
                works: dict[str, Callable[[], Awaitable[int]]] = {
                    "create": lambda: _creates(c, n),
                    "exchange_per_task": lambda: _rounds(w, n // batch, batch),
                    # Each hand-off round also reports its task: a whole dispatch's calls.
                    "handoff_round": lambda: _handoffs(c, w, max(1, n // 4), srv.parked),
                }
                out: dict[str, float] = {}
                for name in phases:
                    work = works[name]
                    out[name + "_calls"] = round(await srv.count(name, work))
                    if repeat:
                        out[name + "_cpu_us"] = round(min([await srv.cpu(work) for _ in range(repeat)]))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", default="sqlite,postgresql", help="stores, in this order")
    ap.add_argument("--tasks", type=int, default=200, help="tasks per measurement")
    ap.add_argument("--batch", type=int, default=4, help="reports (and claims) per exchange")
    ap.add_argument("--top", type=int, default=0, help="also list the N most called functions (stderr)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--repeat", type=int, default=3, help="CPU passes per phase (the least is kept)")
    args = ap.parse_args(argv)
    out = {
        s: asyncio.run(measure(s, args.tasks, args.batch, args.top, args.repeat))
        for s in args.systems.split(",")
    }
    if args.json:
        print(json.dumps(out))
        return
    print("| store | create: calls / CPU µs | exchange, per task | hand-off round |")
    print("|---|---|---|---|")
    for s, r in out.items():
        cells = [
            f"{r[k + '_calls']} / {r[k + '_cpu_us']}"
            for k in ("create", "exchange_per_task", "handoff_round")
        ]
        print(f"| {s} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
