"""`Database.fast_or_full`: hot-path work runs without SQLAlchemy's session, and
work that turns out to need the session is rolled back and done again in a full `tx()`,
leaving exactly one result either way. Notes are published only after a commit."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from store import audit
from store.audit_models import AuditEntry
from store.db import Database, SessionNeeded, Tx

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
