"""store/pg_lean.py: libpq's pipeline driven directly, against the real PostgreSQL.

What store.pg_fast relies on: answers in order, rows loaded by psycopg's own loaders, an
error raised at the next read and at the Sync, nothing committed of a failed transaction, a
connection fit for the next one after a rollback, and statements prepared only once they
exist on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import psycopg
import pytest

from store.db import libpq_dsn
from store.pg_fast import FastPool
from store.pg_lean import Lean
from tests.support import wait_for

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
async def lean(db_url: str) -> AsyncGenerator[Lean]:
    # Through the pool's own connect: its JSON adapters, as the hot path has them.
    pool = FastPool({"conninfo": libpq_dsn(db_url)}, size=1, timeout=5)
    conn = await pool._connect()  # pyright: ignore[reportPrivateUsage]
    try:
        await conn.run("CREATE TEMP TABLE t (id int PRIMARY KEY, doc json, at timestamptz, tags text[])")
        await conn.sync()
        yield conn
    finally:
        await conn.conn.close()


async def test_answers_come_in_order_with_psycopgs_types(lean: Lean) -> None:
    at = datetime(2026, 12, 6, 5, 30, tzinfo=UTC)
    await lean.run(b"INSERT INTO t VALUES ($1, $2, $3, $4)", [1, '{"a": [1, 2]}', at, ["x", "y"]])
    first = lean.send("SELECT id, doc, at, tags FROM t WHERE id = %s", [1])
    second = lean.send("SELECT 'a%%b', %s::int + 1, NULL::text", [41])
    # Read out of order: each slot holds its own answer.
    assert await lean.take(second) == [("a%b", 42, None)]
    assert await lean.take(first) == [(1, {"a": [1, 2]}, at, ["x", "y"])]
    await lean.sync()
    assert lean.idle


async def test_an_error_is_raised_at_the_next_read_and_nothing_of_it_is_committed(
    lean: Lean, db_url: str
) -> None:
    await lean.run(b"INSERT INTO t (id) VALUES ($1)", [1])
    await lean.run(b"INSERT INTO t (id) VALUES ($1)", [1])  # a duplicate: fails on the server
    later = lean.send("SELECT count(*) FROM t")
    with pytest.raises(psycopg.errors.UniqueViolation):
        await lean.take(later)  # skipped by the server: the first error is its answer
    await lean.rollback()
    assert lean.idle
    assert await lean.fetch("SELECT count(*) FROM t") == [(0,)]
    await lean.sync()


async def test_the_sync_raises_the_transactions_error_and_the_next_one_runs(lean: Lean) -> None:
    await lean.run("SELECT * FROM no_such_table")
    with pytest.raises(psycopg.errors.UndefinedTable):
        await lean.sync()
    assert lean.idle
    await lean.run(b"INSERT INTO t (id) VALUES ($1)", [2])
    await lean.sync()
    assert await lean.fetch("SELECT id FROM t") == [(2,)]
    await lean.sync()


async def test_a_prepare_that_failed_is_not_used_later(lean: Lean) -> None:
    """The second run of a statement prepares it. When that Parse fails (here the table is
    gone), the name does not exist on the server: the next run must not execute it."""
    query = "SELECT count(*) FROM later"
    await lean.run("CREATE TEMP TABLE later (x int)")
    assert await lean.fetch(query) == [(0,)]
    await lean.run("DROP TABLE later")
    await lean.sync()
    with pytest.raises(psycopg.errors.UndefinedTable):
        await lean.fetch(query)  # the prepare, failing
    await lean.rollback()
    assert lean.prepared == {}
    await lean.run("CREATE TEMP TABLE later (x int)")
    assert await lean.fetch(query) == [(0,)]
    assert await lean.fetch(query) == [(0,)]
    await lean.sync()
    assert [q for q, _ in lean.prepared if q.startswith(b"SELECT")] == [query.encode()]


async def test_a_cancelled_wait_cancels_the_statement_and_rolls_back(lean: Lean) -> None:
    await lean.run(b"INSERT INTO t (id) VALUES ($1)", [3])
    slow = asyncio.create_task(lean.fetch("SELECT pg_sleep(30)"))
    await asyncio.sleep(0)  # sent: the server runs it
    await _running(lean)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    async with asyncio.timeout(10):  # not the 30 s of the statement
        await lean.rollback()
    assert lean.idle
    assert await lean.fetch("SELECT count(*) FROM t") == [(0,)]
    await lean.sync()


async def _running(lean: Lean) -> None:
    """Until the server shows `lean`'s statement running (another connection looks; the
    statement needs nothing more of this event loop once sent)."""
    pid = lean.conn.info.backend_pid
    with psycopg.connect(lean.conn.info.dsn, autocommit=True) as other:

        def active() -> bool:
            row = other.execute(
                "SELECT state FROM pg_stat_activity WHERE pid = %s AND query LIKE %s", (pid, "%pg_sleep%")
            ).fetchone()
            return row is not None and row[0] == "active"

        wait_for(active, what="the statement running on the server")


class _CountingPg:
    """The libpq connection with its flushes counted: a flush with something queued is a
    write to the server's socket."""

    def __init__(self, pg: object) -> None:
        self._pg = pg
        self.flushes = 0

    def flush(self) -> int:
        self.flushes += 1
        return self._pg.flush()  # pyright: ignore[reportAttributeAccessIssue]

    def __getattr__(self, name: str) -> object:
        return getattr(self._pg, name)


async def test_statements_nobody_reads_go_out_with_the_sync_in_one_write(lean: Lean) -> None:
    """A flush wakes the server's backend at once; on a small box the scheduler then runs it
    on this process's core, which waits for it while it has Python left to run (the hand-off
    after its held insert: issue #15). So `run` queues, and the Sync sends it all."""
    counting = _CountingPg(lean.pg)
    lean.pg = counting  # pyright: ignore[reportAttributeAccessIssue]
    await lean.run(b"INSERT INTO t (id) VALUES ($1)", [1])
    await lean.run(b"INSERT INTO t (id) VALUES ($1)", [2])
    assert counting.flushes == 0
    await lean.sync()
    assert counting.flushes == 1
    lean.pg = counting._pg  # pyright: ignore[reportAttributeAccessIssue, reportPrivateUsage]
    assert await lean.fetch("SELECT count(*) FROM t") == [(2,)]
    await lean.sync()
