"""`ix_tasks_lease` holds running tasks only (migration 0015), and the reaper reads it."""

from __future__ import annotations

import sqlalchemy as sa

from store import reaper
from store.db import Database
from store.models import Task, utcnow
from tests.store.test_pg_round_trips import _create, _setup


async def test_the_lease_index_holds_running_tasks_only(db: Database) -> None:
    """Entries for running tasks only, on either store: before, every version of every
    task's row added one (pending, running, finished)."""
    async with db.read() as s:
        if db.is_sqlite:
            found = (
                await s.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'ix_tasks_lease'"))
            ).scalar()
        else:
            found = (
                await s.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tasks_lease'"))
            ).scalar()
    assert found is not None and "lease_expires_at" in found
    assert "WHERE" in found and "'running'" in found.split("WHERE", 1)[1]
    assert "(status" not in found.split("WHERE", 1)[0]  # the status is the condition, not a column


async def test_the_reaper_finds_expired_leases_through_the_index(db: Database) -> None:
    """Its condition written as the index's own (`status = 'running'`), on either store: a
    bound parameter would not prove the index's condition. Beside 1,000 finished tasks."""
    await _setup(db)
    async with db.tx() as tx:
        task = await _create(tx)
    table = Task.__table__  # pyright: ignore[reportAttributeAccessIssue]
    now = utcnow()
    async with db.tx() as tx:
        s = tx.session
        row = dict((await s.execute(sa.select(table).where(table.c.id == task.id))).mappings().one())
        finished = {**row, "status": "completed", "finished_at": now}
        await s.execute(sa.insert(table), [{**finished, "id": f"{task.id[:-4]}{i:04d}"} for i in range(1000)])
        await s.execute(
            sa.update(table).where(table.c.id == task.id).values(status="running", lease_expires_at=now)
        )
        await s.execute(sa.text("ANALYZE"))
    query = sa.select(table.c.id).where(*reaper.expired(now)).order_by(table.c.lease_expires_at).limit(5)
    async with db.read() as s:
        text = str(query.compile(s.bind, compile_kwargs={"literal_binds": True}))
        explain = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
        plan = " ".join(str(r) for r in (await s.execute(sa.text(explain + text))).all())
    assert "ix_tasks_lease" in plan, plan
