"""Indexes of the tasks that hold only the rows their questions ask about (migration 0015):
running tasks for the reaper, a team's tasks, a task's children; and their questions still
read them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from store import reaper, tasks
from store.db import Database
from store.models import Task, utcnow
from tests.store.test_cancel_tree import _chain
from tests.store.test_pg_round_trips import _create, _setup
from tests.store.test_tasks import new_task, seed

PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.mark.parametrize(
    ("name", "column", "condition"),
    [
        ("ix_tasks_lease", "lease_expires_at", "'running'"),
        ("ix_tasks_team", "team", "team IS NOT NULL"),
        ("ix_tasks_parent_id", "parent_id", "parent_id IS NOT NULL"),
    ],
)
async def test_an_index_holds_only_the_tasks_it_is_asked_about(
    db: Database, name: str, column: str, condition: str
) -> None:
    """On either store: before, every version of every task's row added an entry to each
    (pending, running, finished; with or without a team or a parent)."""
    async with db.read() as s:
        if db.is_sqlite:
            query = "SELECT sql FROM sqlite_master WHERE name = :n"
        else:
            query = "SELECT indexdef FROM pg_indexes WHERE indexname = :n"
        found = (await s.execute(sa.text(query), {"n": name})).scalar()
    assert found is not None
    columns, _, where = found.partition("WHERE")
    assert column in columns and "status" not in columns  # the status is a condition, not a column
    assert condition in where.replace("(", "").replace(")", "").replace("::text", "")


@PG
async def test_a_task_tree_is_read_through_the_parent_index(db: Database) -> None:
    """The cancel tree's recursive read (store.tasks) follows children through the partial
    index: a join on `parent_id = id` proves `parent_id IS NOT NULL`. Without statistics, as
    test_cancel_tree's chain (a scan per level took 65 s for 10,000 levels)."""
    await seed(db)
    root = await new_task(db)
    await _chain(db, root, 2000)
    async with db.read() as s:
        text = str(tasks.tree_query(root).compile(s.bind, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(r) for r in (await s.execute(sa.text("EXPLAIN " + text))).all())
    assert plan.count("ix_tasks_parent_id") == 2, plan


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
