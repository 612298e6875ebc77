"""A fast transaction's rows outside the hot path's own statements (store/fastpath.py):
what a worker's less frequent calls read and write without the ORM session, so that their
work, or the exchange they are part of, is not run again in a full transaction
(store.db.fast_or_full, counted in `meta_agent_fast_path_fallbacks_total`). Through the
transaction's driver (store.fastdriver), so a full transaction runs the same statements.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from store import fastdriver as fd
from store.db import Tx
from store.fastdriver import RETURNING

__all__ = ["last_usage", "needs_on_queue", "task_row", "upsert_worker"]

_TASK_ROW = f"SELECT {RETURNING} FROM tasks WHERE id = ?"
_LAST_USAGE = "SELECT data FROM task_events WHERE task_id = ? AND kind = 'usage' ORDER BY seq DESC LIMIT 1"


async def task_row(tx: Tx, task_id: str) -> dict[str, Any] | None:
    """The task's columns as store.models.from_row takes them, None if there is no such
    task: a fast transaction's read, without the ORM session (a worker's failure is fenced
    by reading its task first: store.leases.fenced)."""
    d = await fd.driver(tx)
    rows = await d.fetch(_text(d, "task_row", _TASK_ROW), [task_id])
    return d.load(rows[0]) if rows else None


async def last_usage(tx: Tx, task_id: str) -> Any:
    """The data of the task's last `usage` event (None if it has none), as task_row reads."""
    d = await fd.driver(tx)
    rows = await d.fetch(_text(d, "last_usage", _LAST_USAGE), [task_id])
    if not rows:
        return None
    data = rows[0][0]
    return json.loads(data) if isinstance(data, str | bytes) else data  # SQLite's is text


_WORKER_COLS = (
    "id",
    "queue",
    "name",
    "hostname",
    "capacity",
    "running",
    "version",
    "capabilities",
    "started_at",
    "last_heartbeat_at",
)


async def upsert_worker(tx: Tx, row: dict[str, Any], update: Sequence[str]) -> None:
    """A worker's `row` inserted, or, its id known, the columns `update` set from it: one
    statement, sent (store.catalog.touch_worker)."""
    d = await fd.driver(tx)
    key = ("upsert_worker", d.ph, tuple(update))
    sql = fd.statements.get(key)
    if sql is None:
        sets = ", ".join(f"{c} = excluded.{c}" for c in update)
        sql = fd.statements[key] = fd.sql(
            d,
            f"INSERT INTO workers ({', '.join(_WORKER_COLS)}) VALUES ({', '.join('?' for _ in _WORKER_COLS)}) "
            f"ON CONFLICT (id) DO UPDATE SET {sets}",
        )
    values = [
        d.json(row[c]) if c == "capabilities" else d.time(row[c]) if c.endswith("_at") else row[c]
        for c in _WORKER_COLS
    ]
    await d.run(sql, values)


async def needs_on_queue(tx: Tx, queue: str, statuses: Sequence[str]) -> list[tuple[str, str]]:
    """The distinct (needs, status) of `queue`'s tasks in `statuses` that need something
    (store.prereqs.plan)."""
    d = await fd.driver(tx)
    marks = ", ".join("?" for _ in statuses)
    template = f"SELECT DISTINCT needs, status FROM tasks WHERE queue = ? AND needs IS NOT NULL AND status IN ({marks})"
    rows = await d.fetch(_text(d, f"needs_on_queue{len(statuses)}", template), [queue, *statuses])
    return [(str(needs), str(status)) for needs, status in rows]


def _text(d: fd.SQLite | fd.Postgres, name: str, template: str) -> str:
    key = (name, d.ph)
    found = fd.statements.get(key)
    if found is None:
        found = fd.statements[key] = fd.sql(d, template)
    return found
