"""`make bench` (scale part): two replicas, SSE fan-out, list latency on a large store.

- replicas (PostgreSQL): dispatch latency with the idle worker long-polling replica A and
  the task created on replica B (the wake-up crosses replicas through LISTEN/NOTIFY), and
  throughput with tasks entering through both replicas and workers split over them.
- fan-out: 1,000 SSE followers of one task on one server; each event carries the time it
  was posted; event-to-follower latency p50/p99, and server memory per follower (RSS
  growth / followers).
- list: GET /tasks?limit=50 (and the board summary, and a /metrics scrape) with 1,000,000
  tasks in the store, and dispatch as `make bench` measures it beside them (a statement
  whose plan reads the whole table shows there: the born statement's pending check once
  took 88 ms a dispatch beside 120,000 tasks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.bench import (
    dispatch,
    free_port,
    fresh_database,
    pct,
    setup,
    start_server,
    start_workers,
    stop,
    throughput,
)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def cross_dispatch(a: str, b: str, samples: int) -> dict[str, float]:
    lat = []
    async with (
        httpx.AsyncClient(base_url=a + "/api/v1", timeout=60) as wa,
        httpx.AsyncClient(base_url=b + "/api/v1", timeout=60) as cb,
    ):
        for i in range(samples + 20):
            claim = asyncio.create_task(
                wa.post("/worker-queues/bench/claim", json={"worker_id": "idle", "wait_seconds": 30})
            )
            await asyncio.sleep(0.005)
            t0 = time.perf_counter()
            (await cb.post("/tasks", json={"agent": "noop", "prompt": f"x{i}"})).raise_for_status()
            (item,) = (await claim).json()["tasks"]
            t1 = time.perf_counter()
            await cb.post(
                f"/tasks/{item['task']['id']}/complete", json={"token": item["token"], "result": None}
            )
            if i >= 20:
                lat.append((t1 - t0) * 1000)
    return {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2), "samples": len(lat)}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def fanout(base: str, pid: int, followers: int, events: int) -> dict[str, float]:
    api = base + "/api/v1"
    async with httpx.AsyncClient(base_url=api, timeout=60) as c:
        tid = (await c.post("/tasks", json={"agent": "noop", "prompt": "fan-out"})).json()["id"]
        (item,) = (
            await c.post("/worker-queues/bench/claim", json={"worker_id": "w", "wait_seconds": 5})
        ).json()["tasks"]
        token = item["token"]
        before = rss_kb(pid)
        lat: list[float] = []
        ready = 0
        all_ready = asyncio.Event()
        limits = httpx.Limits(max_connections=followers + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=api, timeout=120, limits=limits) as s:

            async def follow() -> None:
                nonlocal ready
                got = 0
                async with s.stream("GET", f"/tasks/{tid}/stream") as r:
                    ready += 1
                    if ready == followers:
                        all_ready.set()
                    async for line in r.aiter_lines():
                        if line.startswith("data: ") and '"kind":"log"' in line:
                            sent = json.loads(line[6:])["data"]["t"]
                            lat.append((time.time() - sent) * 1000)
                            got += 1
                            if got == events:
                                return

            tasks = [asyncio.create_task(follow()) for _ in range(followers)]
            await asyncio.wait_for(all_ready.wait(), 120)
            await asyncio.sleep(1.0)  # let every stream reach its idle wait
            during = rss_kb(pid)
            for _ in range(events):
                body = {"token": token, "events": [{"kind": "log", "data": {"t": time.time()}}]}
                (await c.post(f"/tasks/{tid}/events", json=body)).raise_for_status()
                await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return {
        "followers": followers,
        "events": events,
        "p50_ms": round(pct(lat, 50), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "kb_per_follower": round((during - before) / followers, 1),
    }


def seed_tasks(url: str, n: int) -> None:
    """Insert `n` finished tasks directly (the API would take hours at this size)."""
    engine = sa.create_engine(
        url.replace("sqlite:///", "sqlite:///")
        if url.startswith("sqlite")
        else url.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    cols = (
        "id, agent, queue, prompt, parameters, source, status, attempt, lost_leases, max_attempts, "
        "cancel_requested, inputs, usage, last_seq, created_at, updated_at"
    )
    with engine.begin() as conn:
        if url.startswith("sqlite"):
            conn.exec_driver_sql(
                f"""WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
                INSERT INTO tasks ({cols})
                SELECT printf('%08x-0000-7000-8000-000000000000', i), 'noop', 'bench', 'seeded task ' || i, '{{}}', 'api',
                       CASE i % 10 WHEN 0 THEN 'failed' WHEN 1 THEN 'cancelled' ELSE 'completed' END,
                       1, 0, 3, 0, '{{}}', '{{}}', 3, '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM s"""
            )
        else:
            conn.exec_driver_sql(
                f"""INSERT INTO tasks ({cols})
                SELECT lpad(to_hex(i), 8, '0') || '-0000-7000-8000-000000000000', 'noop', 'bench', 'seeded task ' || i,
                       '{{}}', 'api',
                       CASE mod(i, 10) WHEN 0 THEN 'failed' WHEN 1 THEN 'cancelled' ELSE 'completed' END,
                       1, 0, 3, false, '{{}}', '{{}}', 3, now(), now() FROM generate_series(1, {n}) i"""
            )
            conn.exec_driver_sql("ANALYZE tasks")
    engine.dispose()


async def list_latency(base: str, samples: int = 50) -> dict[str, float]:
    out = {}
    async with httpx.AsyncClient(base_url=base + "/api/v1", timeout=60) as c:
        for name, path, params in (
            ("list_50", "/tasks", {"limit": 50}),
            ("list_50_failed", "/tasks", {"limit": 50, "status": "failed"}),
            ("board", "/board", {"limit": 20}),
            ("metrics", base + "/metrics", {}),  # a Prometheus scrape
        ):
            lat = []
            for _ in range(samples + 5):
                t0 = time.perf_counter()
                (await c.get(path, params=params)).raise_for_status()
                lat.append((time.perf_counter() - t0) * 1000)
            lat = lat[5:]
            out[name] = {"p50_ms": round(statistics.median(lat), 2), "p99_ms": round(pct(lat, 99), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phases", default="replicas,fanout,list")
    ap.add_argument("--backends", default="sqlite,postgresql", help="for fanout and list")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--followers", type=int, default=1000)
    ap.add_argument("--list-tasks", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    phases = set(args.phases.split(","))
    results: dict[str, object] = {}
    if "replicas" in phases:
        with tempfile.TemporaryDirectory() as tmp:
            url = fresh_database("postgresql", Path(tmp))
            ports = [free_port(), free_port()]
            servers = [start_server(url, p) for p in ports]
            a, b = (f"http://127.0.0.1:{p}" for p in ports)
            try:
                asyncio.run(setup(a, settle=False))  # two replicas hear each other: they notify for good
                say("[replicas] cross-replica dispatch ...")
                d = asyncio.run(cross_dispatch(a, b, args.samples))
                say(f"[replicas] throughput, {args.tasks} tasks, 4 workers over 2 replicas ...")
                workers = start_workers(a, 2, 16) + start_workers(b, 2, 16)
                t = asyncio.run(throughput(a, url, args.tasks, workers, create_via=[a, b]))
                results["replicas"] = {"dispatch": d, "throughput": t}
                say(
                    f"[replicas] dispatch p50 {d['p50_ms']} ms p99 {d['p99_ms']} ms | {t['tasks_per_s']} tasks/s"
                )
            finally:
                for s in servers:
                    stop(s)
    for backend in args.backends.split(","):
        if not phases & {"fanout", "list"}:
            break
        with tempfile.TemporaryDirectory() as tmp:
            url = fresh_database(backend, Path(tmp))
            if "list" in phases:
                say(f"[{backend}] seeding {args.list_tasks} tasks ...")
                seed_tasks(url, args.list_tasks)
            port = free_port()
            server = start_server(url, port)
            base = f"http://127.0.0.1:{port}"
            try:
                asyncio.run(setup(base))
                r: dict[str, object] = {}
                if "fanout" in phases:
                    for n in sorted({1, args.followers}):
                        say(f"[{backend}] fan-out to {n} SSE follower(s) ...")
                        r[f"fanout_{n}"] = asyncio.run(fanout(base, server.pid, n, 20))
                        say(f"[{backend}] fan-out {r[f'fanout_{n}']}")
                if "list" in phases:
                    r["list"] = asyncio.run(list_latency(base))
                    say(f"[{backend}] list with {args.list_tasks} tasks: {r['list']}")
                    r["dispatch"] = asyncio.run(dispatch(base, args.samples))
                    say(f"[{backend}] dispatch with {args.list_tasks} tasks: {r['dispatch']}")
                results[backend] = r
            finally:
                stop(server)
    print(json.dumps(results, indent=2) if args.json else json.dumps(results))


if __name__ == "__main__":
    main()
