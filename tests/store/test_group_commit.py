# pyright: reportPrivateUsage=false
"""SQLite's group commit (store/group_commit.py): the fast transactions of one loop turn share
a COMMIT, and no caller hears "done" before its writes are committed, whatever the others in
its group do (fail, need the full session, or take the whole transaction down with them)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from kernel import errors
from store import audit
from store.db import Database, Tx

ACTOR = audit.Actor("tester", "person")


@pytest.fixture
async def db(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    path = tmp_path / "group.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    database = Database(f"sqlite:///{path}")
    yield database
    await database.dispose()


def committed_actions(db: Database) -> list[str]:
    """What another connection (another process, say) reads: committed rows only."""
    path = sa.make_url(db.url).database
    assert path
    with sqlite3.connect(path) as conn:
        return sorted(r[0] for r in conn.execute("SELECT action FROM audit_log"))


def record(action: str, fail: BaseException | None = None, session: bool = False):  # type: ignore[no-untyped-def]
    """A unit of work writing one audit row, then failing or asking for the session."""

    async def work(tx: Tx) -> str:
        await audit.record(tx, ACTOR, action)
        tx.notify("test:group", action)
        if session:
            await tx.execute(sa.text("SELECT 1"))
        if fail is not None:
            raise fail
        # Acknowledged only now, after fast_or_full returns: the caller checks it then.
        return action

    return work


async def acknowledged(db: Database, action: str, **kw: object) -> str:
    done = await db.fast_or_full(record(action, **kw))  # type: ignore[arg-type]
    assert action in committed_actions(db), f"{action} acknowledged before it was committed"
    return done


async def test_the_transactions_of_one_turn_share_one_commit(db: Database) -> None:
    group = db._group
    assert group is not None
    await acknowledged(db, "warm-up")
    commits, members = group.commits, group.members
    with db.hub.subscribe("test:group") as sub:
        done = await asyncio.gather(*(acknowledged(db, f"a{i}") for i in range(8)))
        notes = await sub.get(5)
    assert done == [f"a{i}" for i in range(8)]
    assert group.commits - commits == 1 and group.members - members == 8
    assert sorted(notes) == sorted(done)  # each note after its commit, once
    assert committed_actions(db) == sorted(["warm-up", *done])


async def test_a_member_that_fails_takes_only_its_own_writes_back(db: Database) -> None:
    results = await asyncio.gather(
        acknowledged(db, "ok1"),
        acknowledged(db, "bad", fail=errors.Invalid("no", code="nope")),
        acknowledged(db, "ok2"),
        return_exceptions=True,
    )
    assert results[0] == "ok1" and results[2] == "ok2"
    assert isinstance(results[1], errors.Invalid)
    assert committed_actions(db) == ["ok1", "ok2"]
    await acknowledged(db, "after")  # the writer is clean for the next one


async def test_a_member_that_needs_the_session_commits_the_group_first(db: Database) -> None:
    # Its full transaction runs on SQLAlchemy's own connection: with the group's open
    # transaction still holding SQLite's write lock, it would wait for "database is locked".
    results = await asyncio.gather(
        acknowledged(db, "fast1"),
        acknowledged(db, "full", session=True),
        acknowledged(db, "fast2"),
    )
    assert results == ["fast1", "full", "fast2"]
    assert committed_actions(db) == ["fast1", "fast2", "full"]  # the full one once


async def test_when_sqlite_drops_the_transaction_no_member_is_told_it_committed(db: Database) -> None:
    """A full disk: SQLite may roll back the whole open transaction, the group's earlier
    members' writes with it. Whoever returns must be committed; the rest must raise."""
    await acknowledged(db, "before")
    conn = db._fast.connection()  # type: ignore[union-attr]
    pages = conn._conn.execute("PRAGMA page_count").fetchone()[0]
    conn._conn.execute(f"PRAGMA max_page_count = {pages}")  # no page more: SQLITE_FULL

    async def big(tx: Tx) -> str:
        await audit.record(tx, ACTOR, "big")
        tx.raw.run("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
        tx.raw.run("INSERT INTO filler VALUES (zeroblob(4000000))")  # ~1,000 pages: no room
        return "big"

    async def small(i: int) -> str:
        return await db.fast_or_full(record(f"s{i}"))  # type: ignore[arg-type]

    results = await asyncio.gather(small(1), db.fast_or_full(big), small(2), return_exceptions=True)
    assert isinstance(results[1], Exception)  # the big one does not fit
    stored = committed_actions(db)
    for i, r in ((1, results[0]), (2, results[2])):
        if isinstance(r, BaseException):
            assert f"s{i}" not in stored
        else:
            assert f"s{i}" in stored  # told "done": committed
    assert "big" not in stored
    conn._conn.execute("PRAGMA max_page_count = 1073741823")
    await acknowledged(db, "after")  # and the writer recovers


async def test_dispose_commits_a_group_still_open(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    path = tmp_path / "dispose.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    db = Database(f"sqlite:///{path}")
    task = asyncio.create_task(db.fast_or_full(record("last")))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # its transaction ran; its group's commit is still to come
    await db.dispose()
    assert await task == "last"
    assert committed_actions(db) == ["last"]


async def test_no_write_is_readable_before_its_commit(db: Database) -> None:
    seen: list[list[str]] = []

    async def peek(tx: Tx) -> str:
        await audit.record(tx, ACTOR, "pending")
        return "pending"

    task = asyncio.create_task(db.fast_or_full(peek))
    await asyncio.sleep(0)
    seen.append(committed_actions(db))  # released, not yet committed: invisible
    await task
    seen.append(committed_actions(db))
    assert seen == [[], ["pending"]]


async def test_a_caller_cancelled_while_its_group_commits_loses_no_note(db: Database) -> None:
    with db.hub.subscribe("test:group") as sub:
        task = asyncio.create_task(db.fast_or_full(record("cancelled")))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # its transaction ran and joined the group
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await sub.get(5) == ["cancelled"]  # published by the group's commit
    assert committed_actions(db) == ["cancelled"]
