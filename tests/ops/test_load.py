"""10,000 tasks through two replicas and eight worker processes on PostgreSQL: every task
completes exactly once and every event log is complete (pending, running, completed at
seq 1, 2, 3)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from tests.support import free_port, spawn, wait_for

pytestmark = [
    pytest.mark.xdist_group("processes"),
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
    pytest.mark.timeout(600),  # the suite-wide 120 s is for ordinary tests
]

TASKS = 10_000


def test_ten_thousand_tasks_two_replicas_eight_workers(db_url: str, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    urls = []
    for i in range(2):
        port = free_port()
        urls.append(f"http://127.0.0.1:{port}")
        procs.append(
            spawn(
                ["-m", "cli.serve"],
                log=tmp_path / f"replica{i}.log",
                META_AGENT_DATABASE_URL=db_url,
                META_AGENT_PORT=str(port),
                META_AGENT_EMBEDDED_WORKER="false",
            )
        )
    for url in urls:
        wait_for(lambda url=url: httpx.get(url + "/readyz", timeout=1).status_code == 200, 30, url)
    with httpx.Client(base_url=urls[0] + "/api/v1", timeout=30) as c:
        assert c.post("/worker-queues", json={"name": "load"}).status_code == 201
        assert (
            c.post("/agents", json={"name": "noop", "runtime": "noop", "default_queue": "load"}).status_code
            == 201
        )
    for i in range(8):
        procs.append(
            spawn(
                ["-m", "cli.main", "worker", "start", "--queue", "load", "--concurrency", "8"],
                log=tmp_path / f"worker{i}.log",
                META_AGENT_URL=urls[i % 2],
                META_AGENT_WORKSPACE_ROOT=str(tmp_path / f"ws{i}"),
            )
        )

    def create(batch: int) -> int:
        # Each creator talks to one replica; half the tasks enter through each.
        with httpx.Client(base_url=urls[batch % 2] + "/api/v1", timeout=30) as c:
            for i in range(batch * 500, (batch + 1) * 500):
                c.post("/tasks", json={"agent": "noop", "prompt": f"t{i}"}).raise_for_status()
        return 500

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(create, range(TASKS // 500))) == TASKS

    dsn = sa.make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:

        def completed() -> bool:
            (n,) = conn.execute("SELECT count(*) FROM tasks WHERE status = 'completed'").fetchone()  # type: ignore[misc]
            conn.commit()
            return n == TASKS

        wait_for(completed, 300, f"{TASKS} completions")
        by_status = dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall())
        assert by_status == {"completed": TASKS}
        (reruns,) = conn.execute("SELECT count(*) FROM tasks WHERE attempt <> 1").fetchone()  # type: ignore[misc]
        assert reruns == 0
        # Every log is exactly: 1 pending, 2 running, 3 completed; no gaps, no duplicates.
        rows = conn.execute(
            """SELECT count(*) FROM (
                 SELECT t.id FROM tasks t JOIN task_events e ON e.task_id = t.id
                 GROUP BY t.id, t.last_seq
                 HAVING count(*) = 3 AND t.last_seq = 3 AND min(e.seq) = 1 AND max(e.seq) = 3
                    AND string_agg(e.data->>'status', ',' ORDER BY e.seq) = 'pending,running,completed'
               ) ok"""
        ).fetchone()
        assert rows == (TASKS,)
        (workers_used,) = conn.execute("SELECT count(DISTINCT worker_id) FROM tasks").fetchone()  # type: ignore[misc]
        assert workers_used == 8
