"""`make bench`: dispatch latency and end-to-end throughput, on SQLite and PostgreSQL.

Protocol (DESIGN section 10):
- dispatch: an idle worker long-polls `claim`; the bench creates a task over HTTP and
  measures from just before the create request to the moment the claim answer arrives.
  Sequential, N samples after a warm-up; p50 / p99.
- throughput: N no-op tasks, 4 worker processes (the real `meta-agent worker start`),
  measured from the first create request to the last task completed; tasks/s.
Everything is durable: every task, event and status change is committed before it is
acknowledged. The control plane is one `meta-agent serve` process per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.command import command_start
from bench.orphans import drop_orphans, own_name
from sdk.client import AsyncControlPlaneClient

# How long a bench waits for a new server to stop notifying on commit (`settled`).
SETTLE_SECONDS = 15.0

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("META_AGENT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env(**kw: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("META_AGENT_")}
    e.update(LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=str(ROOT), **kw)
    return e


def fresh_database(backend: str, tmp: Path, name: str = "") -> str:
    """An empty, migrated database: a SQLite file in `tmp`, or PostgreSQL's `name` re-created
    (by default `$META_AGENT_BENCH_DB`, else `meta_agent_bench_PID`, this process's own:
    two benches at once on one cluster never drop each other's, and a server left running by
    a killed bench cannot pass for another replica of this one: bench/orphans.py)."""
    from store import migrate

    if not name and backend != "sqlite":
        name = os.environ.get("META_AGENT_BENCH_DB", "")
        if not name:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                drop_orphans(conn, "meta_agent_bench")
            name = own_name("meta_agent_bench")

    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    migrate.upgrade(url)
    return url


LOG_DIR = Path(tempfile.gettempdir()) / "meta-agent-bench"


def start_server(url: str, port: int) -> subprocess.Popen[bytes]:
    # The server's log goes to a file: an unread pipe fills up and then blocks the server.
    LOG_DIR.mkdir(exist_ok=True)
    log = LOG_DIR / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.serve"],
            env=env(
                META_AGENT_DATABASE_URL=url, META_AGENT_PORT=str(port), META_AGENT_EMBEDDED_WORKER="false"
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # a loaded 2-core machine took more than 30 s
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise SystemExit("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def _claim_stamped(worker: AsyncControlPlaneClient) -> tuple[list[Any], float]:
    """The parked claim's answer and the moment it arrived: the worker's, not the moment the
    client's own `create` has returned too (the server answers the worker first)."""
    got = await worker.worker.claim("bench", "bench-idle", 1, 30)
    return list(got), time.perf_counter()


async def dispatch(base: str, samples: int) -> dict[str, float]:
    """A client creates a task while a worker's claim is parked: the time from the client's
    call to the claim's answer. Both sides use the SDK, as a user's client and worker do."""
    lat: list[float] = []
    async with (
        AsyncControlPlaneClient(base, timeout=60) as worker,
        AsyncControlPlaneClient(base, timeout=60) as client,
    ):
        for i in range(samples + 20):
            claim = asyncio.create_task(_claim_stamped(worker))
            await asyncio.sleep(0.005)  # let the long-poll reach the server and go idle
            t0 = time.perf_counter()
            await client.executions.create(agent="noop", prompt=f"d{i}")
            got, t1 = await claim
            (item,) = got
            await worker.worker.complete(item.task.id, item.token, None)
            if i >= 20:
                lat.append((t1 - t0) * 1000)
    return {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2), "samples": len(lat)}


def start_workers(base: str, workers: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "worker",
                "start",
                "--queue",
                "bench",
                "--concurrency",
                str(concurrency),
            ],
            env=env(META_AGENT_URL=base, META_AGENT_WORKSPACE_ROOT=tempfile.mkdtemp()),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(workers)
    ]


def status_counts(db_url: str) -> dict[str, int]:
    """Exact task counts by status, read from the store itself."""
    import sqlalchemy as sa

    from store.db import sync_url
    from store.models import Task

    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(Task.status, sa.func.count()).group_by(Task.status)).all()
    finally:
        engine.dispose()
    return {str(s): int(n) for s, n in rows}


def last_finished(db_url: str) -> float:
    """Epoch seconds of the last task to finish, read from the store itself."""
    import sqlalchemy as sa

    from store.db import sync_url
    from store.models import Task

    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            newest = conn.execute(sa.select(sa.func.max(Task.finished_at))).scalar_one()  # type: ignore[arg-type]
    finally:
        engine.dispose()
    if isinstance(newest, str):
        newest = _parse(newest)
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    return float(newest.timestamp())


async def wait_for_workers(base: str, workers: int, queue: str = "bench") -> None:
    async with httpx.AsyncClient(base_url=base + "/api/v1", timeout=60) as c:
        deadline = time.monotonic() + 30
        while len((await c.get("/workers", params={"queue": queue})).json()["items"]) < workers:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not come up")
            await asyncio.sleep(0.1)


async def load(
    base: str,
    db_url: str,
    n: int,
    create_via: list[str] | None = None,
    clients: int = 32,
    on_poll: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Creates `n` no-op tasks, `clients` requests in flight, and waits until all completed."""
    # Tasks completed earlier (the dispatch phase's) are not this phase's: without this
    # baseline the wait ended that many tasks early and overstated tasks/s.
    before = (await asyncio.to_thread(status_counts, db_url)).get("completed", 0)
    t0, wall0 = time.perf_counter(), time.time()
    sem = asyncio.Semaphore(clients)
    targets = [AsyncControlPlaneClient(u, timeout=60) for u in create_via or [base]]

    async def create(i: int) -> None:
        async with sem:
            await targets[i % len(targets)].executions.create(agent="noop", prompt=f"t{i}")

    await asyncio.gather(*(create(i) for i in range(n)))
    for t in targets:
        await t.aclose()
    t_created = time.perf_counter()
    # Poll gently, from the store (the board's counts stop at 1,000; the control plane
    # is what is measured, not the poller), and take the end time from the tasks
    # themselves: the newest `finished_at`.
    while True:
        done = await asyncio.to_thread(status_counts, db_url)
        if on_poll:
            on_poll(done.get("completed", 0) - before)
        if done.get("completed", 0) - before >= n:
            break
        if done.get("failed"):
            raise SystemExit(f"{done['failed']} tasks failed")
        await asyncio.sleep(0.5)
    t1 = t0 + (last_finished(db_url) - wall0)
    return {
        "tasks": n,
        "seconds": round(t1 - t0, 2),
        "tasks_per_s": round(n / (t1 - t0), 1),
        "create_per_s": round(n / (t_created - t0), 1),
    }


async def throughput(
    base: str, db_url: str, n: int, procs: list[subprocess.Popen[bytes]], create_via: list[str] | None = None
) -> dict[str, float]:
    try:
        await wait_for_workers(base, len(procs))
        r = await load(base, db_url, n, create_via)
    finally:
        for p in procs:
            stop(p)
    return {"tasks": n, "workers": len(procs), **r}


async def setup(base: str, *, settle: bool = True) -> None:
    """The bench's queue and `noop` agent; then, with `settle` (one replica alone), wait
    for the server's commits to stop notifying (`settled`)."""
    async with httpx.AsyncClient(base_url=base + "/api/v1", timeout=30) as c:
        (await c.post("/worker-queues", json={"name": "bench"})).raise_for_status()
        (
            await c.post("/agents", json={"name": "noop", "runtime": "noop", "default_queue": "bench"})
        ).raise_for_status()
    if settle:
        await settled(base)


async def settled(base: str, timeout: float = SETTLE_SECONDS) -> None:
    """Wait until the server's commits no longer notify (`meta_agent_commits_notify 0`).

    A PostgreSQL replica notifies on every commit for its first 2 s, until it knows whether
    another replica listens (store/peers.py), and a commit that notifies reads its rows
    before the commit: a dispatch then costs a round trip more (~0.6 ms, measured under
    #15). The latency phases measure a server past that, as every server running longer
    than 2 s is. One that keeps notifying hears another replica on its database, which a
    bench's own database must not have: that is an error, not something to wait out."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        while True:
            scraped = (await c.get("/metrics")).raise_for_status().text
            if "\nmeta_agent_commits_notify 0.0\n" in scraped:
                return
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the server at {base} still notifies on commit after {timeout:.0f} s: "
                    "another replica listens on its database"
                )
            await asyncio.sleep(0.05)


def cli_list_time(base: str, runs: int = 5) -> float:
    best = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [str(ROOT / ".venv/bin/meta-agent"), "execution", "list", "--limit", "20"],
            env=env(META_AGENT_URL=base),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        best.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(best), 1)


def board_phase(backend: str, args: argparse.Namespace) -> dict[str, object]:
    """A fresh database with `--board-tasks` tasks, a server on it, the page in Chromium."""
    from bench import board

    with tempfile.TemporaryDirectory() as tmp:
        url = fresh_database(backend, Path(tmp))
        if not args.json:
            print(f"[{backend}] board: seeding {args.board_tasks} tasks ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        counts = asyncio.run(board.seed(url, args.board_tasks))
        seeded = round(time.perf_counter() - t0, 1)
        server = start_server(url, port := free_port())
        try:
            r: dict[str, object] = {"tasks": sum(counts.values()), "columns": counts, "seed_seconds": seeded}
            r.update(board.measure(f"http://127.0.0.1:{port}"))
        finally:
            stop(server)
    if not args.json:
        print(
            f"[{backend}] board with {r['tasks']} tasks: first paint with data p50 {r['first_paint_p50_ms']} ms "
            f"(max {r['first_paint_max_ms']}, cold {r['cold_first_paint_ms']}) | GET /board p50 "
            f"{r['board_api_p50_ms']} ms",
            flush=True,
        )
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument(
        "--command-samples", type=int, default=100, help="tasks of the command-start phase (bench/command.py)"
    )
    ap.add_argument("--json", action="store_true", help="print the results as JSON only")
    ap.add_argument(
        "--board", action="store_true", help="also measure the board's first paint (bench/board.py)"
    )
    ap.add_argument("--board-only", action="store_true", help="measure only the board's first paint")
    ap.add_argument("--board-tasks", type=int, default=10_000)
    args = ap.parse_args()
    results: dict[str, dict[str, object]] = {}
    if args.board_only:
        for backend in args.backends.split(","):
            results[backend] = {"board": board_phase(backend, args)}
        if args.json:
            print(json.dumps(results, indent=2))
        return
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            url = fresh_database(backend, Path(tmp))
            port = free_port()
            server = start_server(url, port)
            base = f"http://127.0.0.1:{port}"
            try:
                asyncio.run(setup(base))
                if not args.json:
                    print(
                        f"[{backend}] dispatch latency, {args.samples} samples ...",
                        file=sys.stderr,
                        flush=True,
                    )
                d = asyncio.run(dispatch(base, args.samples))
                if not args.json:
                    print(
                        f"[{backend}] throughput, {args.tasks} no-op tasks, {args.workers} workers ...",
                        file=sys.stderr,
                        flush=True,
                    )
                t = asyncio.run(
                    throughput(base, url, args.tasks, start_workers(base, args.workers, args.concurrency))
                )
                cli = cli_list_time(base)
                if not args.json:
                    print(
                        f"[{backend}] command start, {args.command_samples} tasks ...",
                        file=sys.stderr,
                        flush=True,
                    )
                cmd = command_start(base, args.command_samples)
                results[backend] = {
                    "dispatch": d,
                    "throughput": t,
                    "cli_execution_list_ms": cli,
                    "command": cmd,
                }
            finally:
                stop(server)
        if args.board:
            results[backend]["board"] = board_phase(backend, args)
        if not args.json:
            r = results[backend]
            print(
                f"[{backend}] dispatch p50 {r['dispatch']['p50_ms']} ms, p99 {r['dispatch']['p99_ms']} ms | "
                f"throughput {r['throughput']['tasks_per_s']} tasks/s ({r['throughput']['tasks']} tasks, "
                f"{r['throughput']['seconds']} s) | `execution list` {r['cli_execution_list_ms']} ms | command "
                f"process starts {r['command']['claim_to_process_p50_ms']} / {r['command']['claim_to_process_p99_ms']} ms "
                f"after the claim (p50 / p99), {r['command']['call_to_process_p50_ms']} ms after the call "
                f"(`date` itself: {r['command']['date_own_start_p50_ms']} ms)",
                flush=True,
            )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
