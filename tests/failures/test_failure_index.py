"""`GET /tasks?failure=CLASS` for a rare class seeks `ix_tasks_error_code` (migration 0010)
instead of reading every failed task through the status index."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa

from store.db import sync_url
from tests.board_api.test_api import seed
from tests.board_api.test_metrics import _plans  # pyright: ignore[reportPrivateUsage]
from tests.support import LiveServer

MANY = 20_000  # one in ten failed, as on a real board


def _fill(url: str) -> None:
    """Many tasks, one in ten failed with one of ten common codes (as a real table has),
    written straight into the table (fast), then ANALYZEd so the planner knows the spread."""
    engine = sa.create_engine(sync_url(url))
    sqlite = engine.dialect.name == "sqlite"
    numbers = (
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {MANY}) SELECT i FROM n"
        if sqlite
        else f"SELECT generate_series(1, {MANY}) AS i"
    )
    pad = "printf('%012d', i)" if sqlite else "lpad(i::text, 12, '0')"
    now = "CURRENT_TIMESTAMP"
    codes = ["command_failed", "timeout", "provider_error", "worker_lost", "policy_violation"]
    codes += ["runtime_error", "model_not_found", "invalid_command", "max_tokens", "empty_response"]
    mod = "%" if sqlite else "%%"  # psycopg reads a lone % as a placeholder
    code = f"CASE (i / 10) {mod} 10 " + " ".join(f"WHEN {n} THEN '{c}'" for n, c in enumerate(codes)) + " END"
    code = f"CASE WHEN i {mod} 10 = 0 THEN {code} END"
    status = f"CASE WHEN i {mod} 10 = 0 THEN 'failed' ELSE 'completed' END"
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO tasks (id, agent, queue, prompt, parameters, source, status, attempt, "
                "lost_leases, max_attempts, cancel_requested, error_code, error_message, inputs, usage, "
                f"last_seq, created_at, updated_at) SELECT '00000000-0000-0000-0000-' || {pad}, 'echo', 'q1', "
                f"'x', '{{}}', 'api', {status}, 1, 0, 3, false, {code}, 'exit 1', '{{}}', '{{}}', 1, "
                f"{now}, {now} FROM ({numbers}) AS numbers"
            )
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def test_a_rare_failure_class_seeks_its_index(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
    _fill(server.settings.database_url)
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        seen.append((statement, params))

    engine = server.app.state.db.read_engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        r = httpx.get(f"{server.url}/api/v1/tasks", params={"failure": "missing_prerequisites"})
        common = httpx.get(f"{server.url}/api/v1/tasks", params={"failure": "tool_error", "limit": 5})
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert r.status_code == 200 and r.json()["items"] == []
    assert len(common.json()["items"]) == 5
    on_tasks = [(sql, p) for sql, p in seen if "FROM tasks" in sql and "error_code" in sql]
    assert len(on_tasks) == 2, seen
    rare_plan = _plans(server.settings.database_url, on_tasks[:1])[0]
    assert "ix_tasks_error_code" in rare_plan, rare_plan
