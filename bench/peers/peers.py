"""One round of a peer (Celery or procrastinate): its worker, its client, CPU around throughput."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import IO, Any

import psycopg

from bench import bench
from bench.peers import procstat, venvs

PROCRASTINATE_DB = "procrastinate_bench"


def _env(**kw: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("META_AGENT_", "PYTHON", "VIRTUAL_ENV"))}
    e.update(PYTHONPATH=str(bench.ROOT), **kw)
    return e


def _worker_cmd(system: str, slots: int, pool: str) -> list[str]:
    bin_ = venvs.python(system).parent
    if system == "celery":
        return [
            str(bin_ / "celery"), "-A", "bench.peers.side_celery", "worker", "--pool", pool,
            "--concurrency", str(slots), "--queues", "bench", "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
    return [
        str(bin_ / "procrastinate"), "--log-level", "warning", "--app", "bench.peers.side_procrastinate.app", "worker",
        "--queues", "bench", "--concurrency", str(slots), "--listen-notify",
    ]  # fmt: skip


def _prepare(system: str, pg_url: str) -> None:
    """An empty broker queue, or a fresh procrastinate database with its schema."""
    py = str(venvs.python(system))
    if system == "celery":
        _quiet([py, "-c", "from bench.peers.side_celery import reset; reset()"], _env())
        return
    with psycopg.connect(bench.PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PROCRASTINATE_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PROCRASTINATE_DB}"')
    _quiet(
        [str(venvs.python(system).parent / "procrastinate"), "--app", "bench.peers.side_procrastinate.app",
         "schema", "--apply"],
        _env(BENCH_PEERS_PG=pg_url),
    )  # fmt: skip


def _quiet(cmd: list[str], env: dict[str, str]) -> None:
    r = subprocess.run(cmd, env=env, cwd=bench.ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")


def _read(stdout: IO[str], want: str) -> dict[str, Any]:
    for line in stdout:
        msg = json.loads(line)
        if msg.get("event") == want:
            return dict(msg)
    raise SystemExit(f"the client exited before '{want}' (see its output above)")


def run(system: str, samples: int, tasks: int, clients: int, slots: int, pool: str) -> dict[str, Any]:
    """Dispatch latencies and a throughput phase with CPU ms per task of each process group."""
    pg_url = bench.PG_ADMIN.rsplit("/", 1)[0] + "/" + PROCRASTINATE_DB
    _prepare(system, pg_url)
    peer_env = _env(BENCH_PEERS_PG=pg_url, BENCH_PEERS_POOL=str(clients))
    bench.LOG_DIR.mkdir(exist_ok=True)
    log = bench.LOG_DIR / f"peer-{system}.log"
    client = subprocess.Popen(
        [str(venvs.python(system)), "-m", "bench.peers.client", system, "--samples", str(samples),
         "--tasks", str(tasks), "--clients", str(clients)],
        env=peer_env, cwd=bench.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert client.stdin and client.stdout
    worker = None
    try:
        port = _read(client.stdout, "listening")["port"]
        with open(log, "wb") as out:
            worker = subprocess.Popen(
                _worker_cmd(system, slots, pool),
                env={**peer_env, "BENCH_PEERS_UDP": str(port), "BENCH_PEERS_POOL": str(slots)},
                cwd=bench.ROOT,
                stdout=subprocess.DEVNULL,
                stderr=out,
                start_new_session=True,
            )
        lat = _read(client.stdout, "dispatch")["latencies_ms"]
        _read(client.stdout, "throughput-ready")
        broker = "redis-server" if system == "celery" else "postgres"
        stats = procstat.read_all()
        groups = {
            "workers": [worker.pid],
            "client": [client.pid],
            "broker": procstat.roots_by_comm(stats, broker),
        }
        before = procstat.snapshot(groups)
        client.stdin.write("go\n")
        client.stdin.flush()
        t = _read(client.stdout, "throughput")
        del t["event"]
        after = procstat.snapshot(groups)
    except BaseException:
        if worker is not None:
            sys.stderr.write(log.read_text()[-2000:])
        raise
    finally:
        for p in (client, worker):
            if p is not None:
                bench.stop(p)  # type: ignore[arg-type]
    return {
        "dispatch": {
            "p50_ms": round(bench.pct(lat, 50), 2),
            "p99_ms": round(bench.pct(lat, 99), 2),
            "samples": len(lat),
        },
        "throughput": {**t, "tasks_per_s": round(t["tasks"] / t["seconds"], 1)},
        "cpu_ms_per_task": procstat.per_task_ms(before, after, tasks),
        "config": {"slots": slots, **({"pool": pool} if system == "celery" else {"listen_notify": True})},
    }
