"""PostgreSQL restarted under load: the control plane says it is not ready, answers 503
problem+json (never a 500), and recovers by itself; no task is lost or completed twice.

Runs against a private PostgreSQL cluster so that stopping it disturbs no other test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import PrivatePostgres, free_port, spawn, wait_for

pytestmark = pytest.mark.xdist_group("processes")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    if not PrivatePostgres.available():
        if os.environ.get("CI"):
            pytest.fail("CI needs PostgreSQL's server binaries for the outage test")
        pytest.skip("PostgreSQL server binaries (initdb) not installed")
    from store import migrate

    pg = PrivatePostgres()
    pg.start()
    migrate.upgrade(pg.url)
    yield pg
    pg.destroy()


def test_postgres_restart_under_load(private_pg: PrivatePostgres, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs.append(
        spawn(
            ["-m", "cli.serve"],
            log=tmp_path / "server.log",
            META_AGENT_DATABASE_URL=private_pg.url,
            META_AGENT_PORT=str(port),
            META_AGENT_EMBEDDED_WORKER="false",
            META_AGENT_LEASE_SECONDS="20",
        )
    )
    wait_for(lambda: httpx.get(url + "/readyz", timeout=1).status_code == 200, 30, "the server")
    with httpx.Client(base_url=url + "/api/v1", timeout=10) as api:
        assert api.post("/worker-queues", json={"name": "q1"}).status_code == 201
        agent = {
            "name": "sh",
            "runtime": "command",
            "default_queue": "q1",
            "command": ["bash", "-c", "sleep 0.05; echo ok"],
        }
        assert api.post("/agents", json=agent).status_code == 201
        for i in range(2):
            procs.append(
                spawn(
                    ["-m", "cli.main", "worker", "start", "--queue", "q1", "--concurrency", "4"],
                    log=tmp_path / f"worker{i}.log",
                    META_AGENT_URL=url,
                    META_AGENT_WORKSPACE_ROOT=str(tmp_path / f"ws{i}"),
                )
            )
        ids = [
            api.post("/tasks", json={"agent": "sh", "prompt": f"before {i}"}).json()["id"] for i in range(40)
        ]

        def completed() -> int:
            return int(api.get("/board", params={"limit": 1}).json()["columns"]["completed"]["count"])

        wait_for(lambda: completed() >= 5, 60, "some tasks to complete")

        private_pg.stop()
        wait_for(
            lambda: httpx.get(url + "/readyz", timeout=2).status_code == 503,
            10,
            "/readyz to report not ready",
        )
        for r in (
            api.post("/tasks", json={"agent": "sh", "prompt": "during"}),
            api.get("/tasks"),
            api.get(f"/tasks/{ids[0]}"),
        ):
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "database_unavailable"

        private_pg.start()
        wait_for(lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200, 30, "/readyz to recover")
        # The first request on a pool of dead connections may still see a 503; then it recovers.
        wait_for(lambda: api.get("/tasks", params={"limit": 1}).status_code == 200, 30, "the API to recover")
        ids += [
            api.post("/tasks", json={"agent": "sh", "prompt": f"after {i}"}).json()["id"] for i in range(10)
        ]
        wait_for(lambda: completed() == len(ids), 120, "every task to complete")

        cols = api.get("/board", params={"limit": 1}).json()["columns"]
        assert {k: v["count"] for k, v in cols.items() if v["count"]} == {"completed": len(ids)}
        for tid in ids:
            statuses = [
                e["data"]["status"]
                for e in api.get(f"/tasks/{tid}/events").json()["items"]
                if e["kind"] == "status"
            ]
            assert statuses.count("completed") == 1, (tid, statuses)
    assert "Traceback" not in (tmp_path / "server.log").read_text()
