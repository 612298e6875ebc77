"""/metrics: a key once keys exist, and a scrape that reads no table in full."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import sqlalchemy as sa

from board_api.state import state_of
from store.db import sync_url
from store.peers import WARM_UP
from tests.board_api.test_api import claim, problem, seed
from tests.support import LiveServer, wait_for


def test_metrics_needs_a_key_once_keys_exist(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 200  # open loopback server
    with server.client() as c:
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
        viewer = c.post(
            "/keys",
            json={"name": "prometheus", "scopes": ["viewer"]},
            headers={"authorization": f"Bearer {admin}"},
        ).json()["key"]
    server.app.state.key_cache.invalidate()
    problem(httpx.get(f"{server.url}/metrics"), 401, "unauthorized")
    problem(
        httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer ma_x_y"}), 401, "invalid_key"
    )
    scraped = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {viewer}"})
    assert scraped.status_code == 200 and 'meta_agent_tasks{status="pending"} 0.0' in scraped.text


def test_gauges_count_unfinished_tasks_and_counters_the_finished(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        for i in range(3):
            assert c.post("/tasks", json={"agent": "echo", "prompt": str(i)}).status_code == 201
        (item,) = claim(c)
        assert c.post(
            f"/tasks/{item['task']['id']}/complete", json={"token": item["token"], "result": {}}
        ).is_success
        m = httpx.get(f"{server.url}/metrics").text
    assert 'meta_agent_tasks{status="pending"} 2.0' in m and 'meta_agent_tasks{status="running"} 0.0' in m
    assert 'meta_agent_queue_depth{queue="q1"} 2.0' in m and 'meta_agent_queue_depth{queue="q2"} 0.0' in m
    assert 'meta_agent_tasks_finished_total{status="completed"} 1.0' in m
    assert 'meta_agent_tasks_count_capped{status="pending"} 0.0' in m
    assert 'meta_agent_tasks{status="completed"}' not in m  # finished tasks are counters, not counts


def _plans(url: str, statements: list[tuple[str, Any]]) -> list[str]:
    """The query plan of each statement, on a connection of our own."""
    engine = sa.create_engine(sync_url(url))
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            if not sqlite:
                # No sequential scan unless nothing else is possible: the plan then shows
                # whether an index bounds every read (a tiny table would be scanned anyway).
                conn.exec_driver_sql("SET enable_seqscan = off")
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (FORMAT JSON) "
            return [
                json.dumps([list(r) for r in conn.exec_driver_sql(prefix + sql, params).all()], default=str)
                for sql, params in statements
            ]
    finally:
        engine.dispose()


def test_a_scrape_reads_no_table_in_full(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        c.post("/tasks", json={"agent": "echo", "prompt": "x"})
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        seen.append((statement, params))

    sync_engine = server.app.state.db.read_engine.sync_engine
    sa.event.listen(sync_engine, "before_cursor_execute", record)
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 200
    finally:
        sa.event.remove(sync_engine, "before_cursor_execute", record)
    on_tasks = [(sql, p) for sql, p in seen if " tasks" in sql]
    assert on_tasks, seen
    assert all("LIMIT" in sql.upper() for sql, _ in on_tasks), on_tasks  # every count is capped
    for plan in _plans(server.settings.database_url, on_tasks):
        if server.app.state.db.is_sqlite:
            # "SCAN tasks ..." reads the whole table or index; "SEARCH" seeks a range of one.
            assert "SCAN tasks" not in plan and "SEARCH tasks USING" in plan, plan
        else:
            assert "Seq Scan" not in plan and "Index Cond" in plan, plan


def _commits_notify(server: LiveServer) -> str | None:
    scraped = httpx.get(f"{server.url}/metrics").text
    found = re.search(r"^meta_agent_commits_notify (\S+)$", scraped, re.M)
    return found.group(1) if found else None


def test_the_gauge_says_whether_commits_notify_other_replicas(server: LiveServer) -> None:
    """`meta_agent_commits_notify`: on PostgreSQL 1 while a replica's commits notify the
    others (its first 2 s, then while another is heard: store/peers.py), each commit then
    reading its rows before the Sync; 0 alone and warmed up, and always 0 on SQLite. The
    benches wait for 0 before they measure latency (bench.bench.settled)."""
    db = state_of(server.app).db
    if db.is_sqlite:
        assert _commits_notify(server) == "0.0"
        return
    wait_for(lambda: _commits_notify(server) == "0.0", timeout=WARM_UP + 5, what="the warm-up's end")
    db.hub.peers.heard()  # as when another replica's hello arrives
    assert _commits_notify(server) == "1.0"


def test_fast_path_fallbacks_are_counted_by_work(server: LiveServer) -> None:
    """Work redone in a full transaction (store.db.fast_or_full) shows on /metrics: a hot
    path that keeps falling back pays twice, unseen otherwise (issue #15 found one)."""
    db = state_of(server.app).db
    scraped = httpx.get(f"{server.url}/metrics").text
    assert "# TYPE meta_agent_fast_path_fallbacks_total counter" in scraped
    db.fast_fallbacks["test.work"] += 2  # as fast_or_full counts one
    scraped = httpx.get(f"{server.url}/metrics").text
    assert 'meta_agent_fast_path_fallbacks_total{work="test.work"} 2.0' in scraped
