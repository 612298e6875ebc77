"""One store's run: servers, tasks claimed, followers and senders started, measured, checked."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.bench import LOG_DIR, ROOT, env, free_port, fresh_database, setup, start_server, stop
from bench.peers import procstat
from bench.stream import verify
from bench.stream.plan import Plan, Planned

START_MARGIN = 0.5  # between sending T0 and T0 itself: every child has read it by then


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Options:
    tasks: int
    rate: float
    followers: int
    seconds: float
    warmup: float
    senders: int
    sender_nice: int = 0
    profile: Path | None = None  # py-spy's collapsed stacks of each server, measured window


def profilers(
    servers: list[subprocess.Popen[bytes]], o: Options, store: str
) -> list[subprocess.Popen[bytes]]:
    """py-spy on every server for the measured window (`pip install py-spy` into .venv)."""
    if o.profile is None:
        return []
    o.profile.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    return [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--nonblocking",
                "--format",
                "raw",
                "--duration",
                str(int(o.seconds)),
                "--pid",
                str(s.pid),
                "-o",
                str(o.profile / f"server-{store}-{i}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, s in enumerate(servers)
    ]


async def make_plan(bases: list[str], o: Options) -> Plan:
    """Creates the tasks (round-robin over the replicas) and claims them for the senders."""
    plan = Plan(rate=o.rate, warmup=o.warmup, seconds=o.seconds, queue="bench")
    clients = [httpx.AsyncClient(base_url=b + "/api/v1", timeout=60) for b in bases]
    try:
        sem = asyncio.Semaphore(16)

        async def create(i: int) -> None:
            async with sem:
                r = await clients[i % len(clients)].post("/tasks", json={"agent": "noop", "prompt": f"s{i}"})
                r.raise_for_status()

        await asyncio.gather(*(create(i) for i in range(o.tasks)))
        share = [o.tasks // o.senders + (k < o.tasks % o.senders) for k in range(o.senders)]
        for k, want in enumerate(share):
            got = 0
            while got < want:
                body = {"worker_id": f"stream-{k}", "max_tasks": min(100, want - got), "wait_seconds": 5}
                r = await clients[0].post("/worker-queues/bench/claim", json=body)
                r.raise_for_status()
                for item in r.json()["tasks"]:
                    i = len(plan.tasks)
                    ingest, follow = bases[i % len(bases)], bases[(i + 1) % len(bases)]
                    plan.tasks.append(Planned(i, item["task"]["id"], item["token"], ingest, follow, k))
                    got += 1
    finally:
        for c in clients:
            await c.aclose()
    return plan


def child(module: str, args: list[str], log: Path, nice: int = 0) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        return subprocess.Popen(
            [*(["nice", "-n", str(nice)] if nice else []), sys.executable, "-m", module, *args],
            env=env(),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )


def ready(p: subprocess.Popen[bytes], log: Path) -> None:
    assert p.stdout is not None
    if p.stdout.readline().strip() != b"ready":
        raise SystemExit(f"{p.args} did not start: {log.read_text()[-2000:]}")


def result(p: subprocess.Popen[bytes], timeout: float, log: Path) -> dict[str, Any]:
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.wait()
        return {"error": f"timed out after {timeout:.0f} s", "log": log.read_text()[-2000:]}
    try:
        return json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"exit {p.returncode}", "log": log.read_text()[-2000:]}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the whole machine, from /proc/stat's first line."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(f) - f[3] - f[4], sum(f)  # idle and iowait are not busy


def groups(servers: list[int], senders: list[int], followers: int, store: str) -> dict[str, list[int]]:
    g = {f"server_{i}": [pid] for i, pid in enumerate(servers)}
    g.update(senders=senders, followers=[followers], bench=[os.getpid()])
    if store == "postgresql":
        g["postgresql"] = procstat.roots_by_comm(procstat.read_all(), "postgres")
    return g


def measure(
    plan: Plan, path: Path, servers: list[subprocess.Popen[bytes]], o: Options, store: str
) -> dict[str, Any]:
    logs = LOG_DIR / f"stream-{store}"
    logs.mkdir(parents=True, exist_ok=True)
    flog = logs / "followers.log"
    fol = child("bench.stream.follower", [str(path), str(o.followers)], flog)
    slogs = [logs / f"sender-{k}.log" for k in range(o.senders)]
    senders = [
        child("bench.stream.sender", [str(path), str(k)], slogs[k], o.sender_nice) for k in range(o.senders)
    ]
    procs = [fol, *senders]
    try:
        for p, log in zip(procs, [flog, *slogs], strict=True):
            ready(p, log)
        t0 = time.monotonic() + START_MARGIN
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{t0}\n".encode())
            p.stdin.flush()
        g = groups([s.pid for s in servers], [s.pid for s in senders], fol.pid, store)
        w0, w1 = t0 + o.warmup, t0 + o.warmup + o.seconds
        time.sleep(max(0.0, w0 - time.monotonic()))
        before, m0 = procstat.snapshot(g), machine_ticks()
        spies = profilers(servers, o, store)
        time.sleep(max(0.0, w1 - time.monotonic()))
        after, m1 = procstat.snapshot(g), machine_ticks()
        rss = [peak_rss_mb(s.pid) for s in servers]
        for spy in spies:
            spy.wait(30)
        bound = 120 + o.seconds
        sent = [result(p, bound, log) for p, log in zip(senders, slogs, strict=True)]
        seen = result(fol, 60, flog)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    cpu_ms = {name: round(procstat.ms(after[name] - before[name]), 1) for name in g}
    # The machine is shared: what the rest of it used in the window says how contended it was.
    busy = procstat.ms(m1[0] - m0[0])
    machine = {
        "busy_cores": round(busy / (o.seconds * 1000), 2),
        "cores": os.cpu_count(),
        "others_cores": round((busy - sum(cpu_ms.values())) / (o.seconds * 1000), 2),
    }
    return {
        "cpu_ms": cpu_ms,
        "machine": machine,
        "server_peak_rss_mb": rss,
        "senders": sent,
        "followers": seen,
    }


def fresh(store: str, tmp: Path) -> str:
    """A migrated empty database; on PostgreSQL this process's own (bench/orphans.py), so
    `make bench` and this one may run at once on one cluster."""
    return fresh_database(store, tmp)


def run(store: str, o: Options) -> dict[str, Any]:
    replicas = 1 if store == "sqlite" else 2
    with tempfile.TemporaryDirectory() as tmp:
        url = fresh(store, Path(tmp))
        ports = [free_port() for _ in range(replicas)]
        servers = [start_server(url, port) for port in ports]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        try:
            # Two PostgreSQL replicas hear each other: their commits notify for good.
            asyncio.run(setup(bases[0], settle=replicas == 1))
            plan = asyncio.run(make_plan(bases, o))
            path = Path(tmp) / "plan.json"
            plan.save(path)
            say(
                f"[{store}] {o.tasks} tasks × {o.rate:g} events/s, {o.followers} followers, "
                f"{replicas} replica(s), {o.senders} sender process(es) at nice {o.sender_nice}: {o.warmup:g} s warm-up + {o.seconds:g} s ..."
            )
            r = measure(plan, path, servers, o, store)
        finally:
            for s in servers:
                stop(s)
        r["store"], r["replicas"] = store, replicas
        sent: dict[str, int] = {}
        for s in r["senders"]:
            sent.update(s.get("sent", {}))
        fol = r["followers"]
        problems = fol.get("problems", {}) if "error" not in fol else {"followers": fol["error"]}
        r["integrity"] = verify.check(url, sent, fol.get("seen", {}), problems)
    return r
