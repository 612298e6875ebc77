"""`serve` refuses unsafe or impossible starts with a clear message, before listening."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.cli.test_http_protocol import first_read
from tests.support import ROOT, child_env, free_port, spawn, wait_for


def run_serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.serve"],
        env=child_env(META_AGENT_PORT=str(free_port()), META_AGENT_EMBEDDED_WORKER="false", **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_refuses_a_public_address_without_api_keys(tmp_path: Path) -> None:
    r = run_serve(tmp_path, META_AGENT_HOST="0.0.0.0", META_AGENT_DATABASE_URL=f"sqlite:///{tmp_path}/a.db")
    assert r.returncode != 0
    assert "refusing to listen on 0.0.0.0 with no API keys" in r.stderr
    assert "Traceback" not in r.stderr


def test_refuses_an_unmigrated_postgresql(pg_url: str, tmp_path: Path) -> None:
    import psycopg
    import sqlalchemy as sa

    admin = sa.make_url(pg_url).set(drivername="postgresql")
    name = admin.database + "_empty"
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        r = run_serve(
            tmp_path, META_AGENT_DATABASE_URL=admin.set(database=name).render_as_string(hide_password=False)
        )
        assert r.returncode != 0
        assert "run `meta-agent db upgrade` first" in r.stderr and "Traceback" not in r.stderr
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_refuses_an_empty_host_without_api_keys(tmp_path: Path) -> None:
    # An empty host binds every interface: it is not loopback, so it needs keys.
    r = run_serve(tmp_path, META_AGENT_HOST="", META_AGENT_DATABASE_URL=f"sqlite:///{tmp_path}/a.db")
    assert r.returncode != 0
    assert "refusing to listen on every interface (an empty host) with no API keys" in r.stderr
    assert "Traceback" not in r.stderr
    cli = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--host", "", "--no-embedded-worker"],
        env=child_env(META_AGENT_PORT=str(free_port()), META_AGENT_DATABASE_URL=f"sqlite:///{tmp_path}/b.db"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode != 0 and "with no API keys" in cli.stderr, cli.stderr


def test_the_embedded_worker_outlives_the_first_key(db_url: str, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    """Creating the first key on a running open server used to stop it: its worker had no key."""
    port = free_port()
    procs.append(
        spawn(
            ["-m", "cli.serve"],
            log=tmp_path / "serve.log",
            META_AGENT_PORT=str(port),
            META_AGENT_DATABASE_URL=db_url,
            META_AGENT_WORKSPACE_ROOT=str(tmp_path / "ws"),
            META_AGENT_EMBEDDED_WORKER_CONCURRENCY="1",
        )
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "serve to start")
    # `serve` writes each answer's head and body at once (cli/http_protocol.py): the whole
    # of it is there on a client's first read.
    head, body = first_read(port)
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: %d" % len(body) in head.lower() and body
    with httpx.Client(base_url=f"{base}/api/v1", timeout=30) as anon:
        agent = {"name": "echo", "runtime": "noop", "default_queue": "default"}
        assert anon.post("/agents", json=agent).status_code == 201
        admin = anon.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
        # Once the server has seen the key, the worker's next call is no longer open mode.
        wait_for(lambda: anon.get("/tasks").status_code == 401, 10, "open mode to end")
    with httpx.Client(
        base_url=f"{base}/api/v1", timeout=30, headers={"authorization": f"Bearer {admin}"}
    ) as c:
        for _ in range(2):  # the first may ride a claim made in open mode; the second cannot
            tid = c.post("/tasks", json={"agent": "echo", "prompt": "still there?"}).json()["id"]
            done = wait_for(
                lambda tid=tid: c.get(f"/tasks/{tid}").json()["status"] == "completed",
                30,
                "the task to complete",
            )
            assert done
        assert [w["name"] for w in c.get("/workers").json()["items"]] == ["embedded"]
    assert procs[-1].poll() is None, (tmp_path / "serve.log").read_text()
    assert "maw_" not in (tmp_path / "serve.log").read_text()  # the credential is never logged


def test_the_start_up_heap_is_frozen_once_serving(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Full collections of a busy server's start-up heap stopped its loop for 0.3-0.5 s at a
    time (kernel.loop.settle_heap): `serve` freezes it once the lifespan is up."""
    port, log = free_port(), tmp_path / "serve.log"
    procs.append(
        spawn(
            ["-m", "cli.serve"],
            log=log,
            META_AGENT_PORT=str(port),
            META_AGENT_DATABASE_URL=f"sqlite:///{tmp_path}/a.db",
            META_AGENT_EMBEDDED_WORKER="false",
        )
    )
    wait_for(lambda: "start-up heap frozen" in log.read_text(), 60, "the heap to be frozen")
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
