"""A claim on PostgreSQL reads its queue's pending tasks and not the rest of the table, with
the generic plan PostgreSQL may settle on for its prepared statement forced
(tests/store/plans.py)."""

from __future__ import annotations

from typing import Any

import pytest

from store import fastdriver as fd
from store import tasks
from store.db import Database
from tests.store.plans import generic_plan, reads_only_its_own
from tests.store.test_pg_round_trips import _create, _setup

PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@PG
@pytest.mark.parametrize("caps", [None, {"tools": ["bash"]}], ids=["any_task", "with_capabilities"])
@pytest.mark.parametrize("here", [None, "pending"], ids=["none_pending", "one_pending"])
@pytest.mark.parametrize(
    "crowd", [("other", "pending"), ("q", "running")], ids=["beside_pending_elsewhere", "beside_running_here"]
)
async def test_a_claim_reads_only_the_queues_pending_tasks(
    db_url: str,
    caps: dict[str, Any] | None,
    here: str | None,
    crowd: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `queue = $1 AND status = 'pending' ORDER BY id`, the generic plan scanned and
    sorted 3,000 tasks pending on another queue to claim on this one, and walked the primary
    key beside a million of them (172 ms a claim on an empty queue). With `id IN (...)`, it
    updated the claimed tasks through a hash join over a scan of the whole table. And a
    range whose end does not stop the index scan reads on through the queue's running
    tasks (3,000 of them here)."""
    sent: list[tuple[bytes, list[Any]]] = []
    real = fd.Postgres.send

    async def spy(self: fd.Postgres, sql: str | bytes, params: Any) -> Any:
        text = sql if isinstance(sql, bytes) else sql.encode()
        if b"SKIP LOCKED" in text:
            sent.append((text, list(params)))
        return await real(self, sql, params)

    monkeypatch.setattr(fd.Postgres, "send", spy)
    db = Database(db_url)
    try:
        await _setup(db)
        async with db.tx() as tx:
            task = await _create(tx)
        (claimed,) = await db.fast_or_full(
            lambda tx: tasks.claim_tasks(tx, "q", "w", 1, 60, {}, capabilities=caps)
        )
    finally:
        await db.dispose()
    assert claimed.task.id == task.id
    ((sql, params),) = sent
    assert (b"needs IS NULL" in sql) == (caps is not None)
    marks = sql.split(b"%s")  # psycopg's placeholders, as PREPARE's
    sql = marks[0] + b"".join(b"$%d" % i + part for i, part in enumerate(marks[1:], 1))
    on_tasks = generic_plan(db_url, sql, params, crowd=(task.id, *crowd), rows=3000, own=here)
    assert reads_only_its_own(on_tasks)
    updated = [n["Actual Rows"] for n in on_tasks if n.get("Operation") == "Update"]
    assert updated == [1 if here else 0]
