"""`Database.fast_or_full`: hot-path work runs without SQLAlchemy's session, and
work that turns out to need the session is rolled back and done again in a full `tx()`,
leaving exactly one result either way. Notes are published only after a commit."""

from __future__ import annotations

import functools

import pytest
import sqlalchemy as sa

from store import audit, catalog, events, tasks
from store.audit_models import AuditEntry
from store.db import Database, SessionNeeded, Tx
from store.models import Agent, WorkerQueue

ACTOR = audit.Actor("tester", "person")


async def _count(db: Database, action: str) -> int:
    async with db.read() as s:
        query = sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.action == action)  # pyright: ignore[reportArgumentType]
        return int((await s.execute(query)).scalar_one())


async def test_plain_work_commits_without_a_session(db: Database) -> None:
    sessions: list[bool] = []

    async def work(tx: Tx) -> str:
        entry = await audit.record(tx, ACTOR, "fast.plain")
        try:
            tx.session  # noqa: B018  (asking is what the test is about)
            sessions.append(True)
        except SessionNeeded:
            sessions.append(False)
        tx.notify("test:fast", entry)
        return entry

    with db.hub.subscribe("test:fast") as sub:
        entry = await db.fast_or_full(work)
        assert await sub.get(5) == [entry]
    assert await _count(db, "fast.plain") == 1
    assert sessions == [False]  # one pass, without a session


async def test_work_that_needs_the_session_is_rolled_back_and_done_once_in_full(db: Database) -> None:
    passes: list[str] = []

    async def work(tx: Tx) -> None:
        await audit.record(tx, ACTOR, "fast.then.full")  # written before the session is asked for
        passes.append("fast" if tx.raw is not None else "full")
        await tx.execute(sa.text("SELECT 1"))  # needs the session

    await db.fast_or_full(work)
    assert passes == ["fast", "full"]
    assert await _count(db, "fast.then.full") == 1  # the fast pass left nothing behind
    # Counted by the work's name (/metrics shows it), a partial's by its function's: the
    # exchange's work is one, and "partial" named nothing.
    await db.fast_or_full(functools.partial(work))
    assert db.fast_fallbacks == {work.__qualname__: 2}


async def test_a_failure_in_fast_work_stores_nothing_and_publishes_nothing(db: Database) -> None:
    async def work(tx: Tx) -> None:
        await audit.record(tx, ACTOR, "fast.fails")
        tx.notify("test:fails", "x")
        raise ValueError("boom")

    with db.hub.subscribe("test:fails") as sub:
        with pytest.raises(ValueError, match="boom"):
            await db.fast_or_full(work)
        db.hub.publish("test:fails", "after")  # what the failed work queued would come first
        assert await sub.get(5) == ["after"]
    assert await _count(db, "fast.fails") == 0


async def _agent(db: Database) -> None:
    async with db.tx() as tx:
        await catalog.create_queue(tx, WorkerQueue(name="q"))
        await catalog.create_agent(tx, Agent(name="a", runtime="noop", default_queue="q"))


async def test_a_creation_is_stored_with_its_event_and_audit_row_whatever_follows_it(db: Database) -> None:
    """On PostgreSQL a task's INSERT waits for its audit row to join it (fastpath.insert_task):
    alone it still goes at the commit, and before any statement that follows it (a claim
    here, which must find the task)."""
    await _agent(db)

    async def audited(tx: Tx) -> str:
        task = await tasks.create_task(tx, tasks.NewTask(prompt="audited", agent="a"))
        await audit.record(tx, ACTOR, "fast.create", "task", task.id, {"agent": "a"})
        return task.id

    async def alone(tx: Tx) -> str:
        return (await tasks.create_task(tx, tasks.NewTask(prompt="alone", agent="a"))).id

    async def then_claimed(tx: Tx) -> list[str]:
        created = (await tasks.create_task(tx, tasks.NewTask(prompt="claimed", agent="a"))).id
        claimed = await tasks.claim_tasks(tx, "q", "w", 5, 60, {}, touch=False)
        assert [c.task.id for c in claimed] == [created]
        await audit.record(tx, ACTOR, "fast.create", "task", created)  # after: on its own
        return [created]

    ids = [*await db.fast_or_full(then_claimed), await db.fast_or_full(audited), await db.fast_or_full(alone)]
    assert db.fast_fallbacks == {}
    async with db.read() as s:
        found = {t.id: t for t in (await tasks.list_tasks(s, limit=10))[0]}
        assert [found[i].status for i in ids] == ["running", "pending", "pending"]
        assert [found[i].prompt for i in ids] == ["claimed", "audited", "alone"]
        first = [
            (e.seq, e.kind, e.data, e.attempt) for i in ids for e in (await events.list_after(s, i, 0))[:1]
        ]
        query = sa.select(AuditEntry.target_id, AuditEntry.details).where(AuditEntry.action == "fast.create")  # pyright: ignore[reportArgumentType]
        audited_rows = sorted((await s.execute(query)).all())
    assert first == [(1, "status", {"status": "pending", "from": None}, 0)] * 3
    assert audited_rows == sorted([(ids[0], {}), (ids[1], {"agent": "a"})])


async def test_a_creation_that_fails_after_its_audit_row_stores_neither(db: Database) -> None:
    await _agent(db)

    async def work(tx: Tx) -> None:
        task = await tasks.create_task(tx, tasks.NewTask(prompt="p", agent="a"))
        await audit.record(tx, ACTOR, "fast.create.fails", "task", task.id)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db.fast_or_full(work)
    assert await _count(db, "fast.create.fails") == 0
    async with db.read() as s:
        assert await tasks.list_tasks(s, limit=10) == ([], None)
