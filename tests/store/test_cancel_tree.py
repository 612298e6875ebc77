"""Cancelling a task cancels its unfinished descendants, however deep the chain."""

from __future__ import annotations

import sqlalchemy as sa

from store import tasks
from store.db import Database
from store.models import Task, TaskEvent, new_id, utcnow
from tests.store.test_tasks import new_task, seed

DEPTH = 10_000


async def _chain(db: Database, root: str, depth: int) -> list[str]:
    """`depth` unfinished tasks, each the child of the one before, written in bulk: going
    through create_task 10,000 times would test nothing more and take minutes."""
    ids = [new_id() for _ in range(depth)]
    now = utcnow()
    statuses = ["pending", "requires_input", "running"]
    rows = [
        {
            "id": tid,
            "agent": "echo",
            "queue": "q1",
            "parent_id": ids[i - 1] if i else root,
            "status": statuses[i % 3],
            "attempt": 1 if statuses[i % 3] == "running" else 0,
            "last_seq": 0,
            "created_at": now,
            "updated_at": now,
        }
        for i, tid in enumerate(ids)
    ]
    async with db.tx() as tx:
        for i in range(0, depth, 1000):
            await tx.execute(sa.insert(Task), rows[i : i + 1000])
    return ids


async def test_cancel_a_ten_thousand_deep_chain(db: Database) -> None:
    await seed(db)
    root = await new_task(db)
    chain = await _chain(db, root, DEPTH)
    async with db.tx() as tx:
        assert (await tasks.cancel(tx, root, by="alice")).status == "cancelled"
    async with db.read() as s:
        rows = (
            await s.execute(sa.select(Task.status, Task.cancel_requested).where(Task.id.in_(chain)))
        ).all()
        logs = await s.scalar(
            sa.select(sa.func.count()).select_from(TaskEvent).where(TaskEvent.kind == "log")
        )
        events = await s.scalar(
            sa.select(sa.func.count()).select_from(TaskEvent).where(TaskEvent.kind == "status")
        )
    running = DEPTH // 3
    assert sorted(r.status for r in rows if r.status != "cancelled") == ["running"] * running
    assert all(r.cancel_requested for r in rows if r.status == "running")
    assert logs == running  # each running worker is asked once, in its log
    assert events == 2 + DEPTH - running  # root: pending + cancelled; each stopped child: one


async def test_cancel_skips_finished_branches_and_refuses_a_finished_task(db: Database) -> None:
    await seed(db)
    root = await new_task(db)
    (done,) = await _chain(db, root, 1)
    (below_done,) = await _chain(db, done, 1)
    async with db.tx() as tx:
        await tx.execute(sa.update(Task).where(Task.id == done).values(status="completed"))
    async with db.tx() as tx:
        await tasks.cancel(tx, root)
    async with db.read() as s:
        # A finished child's own children are not the cancelled task's work any more.
        assert (await tasks.get_task(s, below_done)).status == "pending"
        assert (await tasks.get_task(s, done)).status == "completed"
