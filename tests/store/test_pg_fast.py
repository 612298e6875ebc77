"""`Database.fast_tx()` on PostgreSQL: its own psycopg connections (store/pg_fast.py).

What the hot routes rely on, against a real server: a commit is visible to everyone, a
failure leaves nothing, notes go to the other replicas with the transaction (and only if it
commits), a dead connection costs one 503 and is replaced, a full pool is `database_busy`,
and dispose closes every connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from pydantic_core import to_json

from kernel import errors
from store import audit, catalog, events, tasks
from store.audit_models import AuditEntry
from store.db import Database, SessionNeeded, Tx, libpq_dsn
from store.hub import Subscription
from store.models import Agent, WorkerQueue
from store.pg_lean import Lean
from tests.support import free_port, pg_replica, wait_for

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

ACTOR = audit.Actor("tester", "person")


async def _count(db: Database, action: str) -> int:
    async with db.read() as s:
        query = sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.action == action)  # pyright: ignore[reportArgumentType]
        return int((await s.execute(query)).scalar_one())


def _admin(db_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_dsn(db_url), autocommit=True)


async def test_a_fast_tx_runs_on_its_own_connection_and_commits_before_returning(db_url: str) -> None:
    db = Database(db_url)
    try:
        async with db.fast_tx() as tx:
            assert isinstance(tx.raw, Lean)
            with pytest.raises(SessionNeeded):
                tx.session  # noqa: B018
            await audit.record(tx, ACTOR, "pg.fast.commit")
            with _admin(db_url) as admin:  # not committed yet: nobody else sees it
                seen = admin.execute(
                    "SELECT count(*) FROM audit_log WHERE action = 'pg.fast.commit'"
                ).fetchone()
                assert seen == (0,)
        with _admin(db_url) as admin:
            seen = admin.execute("SELECT count(*) FROM audit_log WHERE action = 'pg.fast.commit'").fetchone()
            assert seen == (1,)
    finally:
        await db.dispose()


async def test_an_exception_rolls_back_and_the_connection_is_reused(db_url: str) -> None:
    db = Database(db_url)
    try:
        pids: list[int] = []
        with pytest.raises(ValueError, match="boom"):
            async with db.fast_tx() as tx:
                await audit.record(tx, ACTOR, "pg.fast.rollback")
                pids.append(tx.raw.conn.info.backend_pid)
                raise ValueError("boom")
        # A failed statement leaves the transaction aborted: rolled back all the same.
        with pytest.raises(psycopg.errors.UndefinedTable):
            async with db.fast_tx() as tx:
                pids.append(tx.raw.conn.info.backend_pid)
                await tx.raw.fetch("SELECT * FROM no_such_table")
        async with db.fast_tx() as tx:
            pids.append(tx.raw.conn.info.backend_pid)
            await audit.record(tx, ACTOR, "pg.fast.after")
        assert await _count(db, "pg.fast.rollback") == 0
        assert await _count(db, "pg.fast.after") == 1
        assert len(set(pids)) == 1  # one connection throughout: a clean rollback keeps it
    finally:
        await db.dispose()


async def test_a_failure_after_statements_ran_leaves_nothing(db_url: str) -> None:
    """The transaction is the pipeline's implicit one, committed by its Sync: statements the
    server has already run (sent ahead of a read) are rolled back all the same when the
    block fails, by Python or by a later statement, and the connection is reused."""
    db = Database(db_url, pool_size=1)
    try:
        pids: set[int] = set()
        for failure in ("python", "sql"):
            with pytest.raises((ValueError, psycopg.errors.UndefinedTable)):
                async with db.fast_tx() as tx:
                    pids.add(tx.raw.conn.info.backend_pid)
                    await audit.record(tx, ACTOR, "pg.fast.ran")
                    rows = await tx.raw.fetch("SELECT count(*) FROM audit_log WHERE action = 'pg.fast.ran'")
                    assert rows == [(1,)]  # it ran, in this transaction
                    if failure == "python":
                        raise ValueError("boom")
                    await tx.raw.fetch("SELECT * FROM no_such_table")
        assert await _count(db, "pg.fast.ran") == 0
        async with db.fast_tx() as tx:
            pids.add(tx.raw.conn.info.backend_pid)
            await audit.record(tx, ACTOR, "pg.fast.ran")
        assert await _count(db, "pg.fast.ran") == 1
        assert len(pids) == 1
    finally:
        await db.dispose()


async def test_session_needed_rolls_back_the_fast_pass_and_redoes_it_in_full(db: Database) -> None:
    passes: list[str] = []

    async def work(tx: Tx) -> None:
        await audit.record(tx, ACTOR, "pg.fast.then.full")
        tx.notify("test:twice", str(len(passes)))
        passes.append("fast" if tx.raw is not None else "full")
        await tx.execute(sa.text("SELECT 1"))  # needs the session

    with db.hub.subscribe("test:twice") as sub:
        await db.fast_or_full(work)
        assert await sub.get(5) == ["1"]  # the fast pass's note was dropped with it
    assert passes == ["fast", "full"]
    assert await _count(db, "pg.fast.then.full") == 1
    assert db.fast_fallbacks == {work.__qualname__: 1}


async def _notes(sub: Subscription, n: int, rows: Callable[[], Awaitable[int]]) -> list[str]:
    """The first `n` notes `sub` receives; when the first arrives, `rows()` (the rows the
    notes announce, counted on the receiving replica) must be 1 already."""
    got: list[str] = []
    while len(got) < n:
        batch = await sub.get(10)
        assert batch, got  # [] is a timeout, None an overflow
        if not got:
            assert await rows() == 1
        got += batch
    return got


async def test_notes_reach_another_replica_with_the_commit_only(db_url: str) -> None:
    db = Database(db_url)
    try:
        async with pg_replica(db_url) as other:
            with other.hub.subscribe("test:replica") as sub:
                with pytest.raises(ValueError, match="boom"):
                    async with db.fast_tx() as tx:
                        tx.notify("test:replica", "rolled back")
                        raise ValueError("boom")
                # The NOTIFY is sent in the transaction: when the commit itself fails (a
                # deferred constraint is checked at commit), the note goes nowhere.
                with pytest.raises(psycopg.errors.UniqueViolation):
                    async with db.fast_tx() as tx:
                        await tx.raw.fetch(
                            "CREATE TEMP TABLE once (x int UNIQUE DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP"
                        )
                        await tx.raw.fetch("INSERT INTO once VALUES (1), (1)")
                        tx.notify("test:replica", "commit failed")
                # Quoting survives (the notes go as bound parameters), and notes over one NOTIFY's
                # 8000 bytes go as several, in order.
                odd = "it's a \\ 'quote'); COMMIT; --"
                big = ["a" * 5000, "b" * 5000]

                async def work(tx: Tx) -> str:
                    entry = await audit.record(tx, ACTOR, "pg.fast.notify")
                    for payload in [entry, odd, *big]:
                        tx.notify("test:replica", payload)
                    return entry

                entry = await db.fast_or_full(work)
                # Followers re-read on a note: the row is there by the time it arrives.
                assert await _notes(sub, 4, lambda: _count(other, "pg.fast.notify")) == [entry, odd, *big]
    finally:
        await db.dispose()


async def test_a_creation_and_its_notes_are_one_statement_that_commits_them_together(db_url: str) -> None:
    """A task's creation is held until the commit, whose notifications join it (store.
    fastpath.insert_task): every note still arrives, in order, several NOTIFYs' worth, and
    after the rows; and a creation with no note to send is committed all the same."""
    db = Database(db_url)
    try:
        async with db.tx() as tx:
            await catalog.create_queue(tx, WorkerQueue(name="q"))
            await catalog.create_agent(tx, Agent(name="a", runtime="noop", default_queue="q"))
        async with pg_replica(db_url) as other:
            with other.hub.subscribe("test:created") as sub:
                odd = "it's a \\ 'quote'); COMMIT; --"
                big = ["a" * 5000, "b" * 5000]

                async def work(tx: Tx) -> str:
                    task = await tasks.create_task(tx, tasks.NewTask(prompt="p", agent="a"))
                    await audit.record(tx, ACTOR, "pg.fast.created", "task", task.id)
                    assert tx.held is not None  # nothing sent yet but the agent's read
                    for payload in [task.id, odd, *big]:
                        tx.notify("test:created", payload)
                    return task.id

                created = await db.fast_or_full(work)
                assert await _notes(sub, 4, lambda: _count(other, "pg.fast.created")) == [created, odd, *big]

            async with db.fast_tx() as tx:
                quiet = (await tasks.create_task(tx, tasks.NewTask(prompt="quiet", agent="a"))).id
                tx.notes.clear()  # the writes alone at the commit
        async with db.read() as s:
            assert (await tasks.get_task(s, quiet)).status == "pending"
            assert [e.seq for e in await events.list_after(s, quiet, 0)] == [1]
    finally:
        await db.dispose()


async def test_a_replica_publishes_its_own_notes_once(db: Database, db_url: str) -> None:
    """A replica publishes its notes at its commit; LISTEN brings them back, and those are
    not published again (a second `queue:` wake-up sent a parked claim to the database for
    nothing). Another replica's notes still arrive, after ours (commit order)."""
    async with pg_replica(db_url) as replica:
        with replica.hub.subscribe("test:once") as sub:
            async with replica.fast_tx() as tx:
                tx.notify("test:once", "fast")
            async with replica.tx() as tx:
                tx.notify("test:once", "full")
            async with db.fast_tx() as tx:
                tx.notify("test:once", "theirs")
            got: list[str] = []
            while "theirs" not in got:
                batch = await sub.get(10)
                assert batch, got  # [] is a timeout
                got += batch
            assert got == ["fast", "full", "theirs"]


async def test_a_statement_run_twice_is_prepared(db_url: str) -> None:
    """A statement is prepared once it has run `prepare_threshold` (2) times on a
    connection: the hot statements are parsed and planned once per connection."""
    db = Database(db_url, pool_size=1)
    try:
        for _ in range(3):
            async with db.fast_tx() as tx:
                await audit.record(tx, ACTOR, "pg.fast.prepared")
        async with db.fast_tx() as tx:
            rows = await tx.raw.fetch("SELECT statement FROM pg_prepared_statements")
            statements = [r[0] for r in rows]
        assert any("INSERT INTO audit_log" in s for s in statements), statements
    finally:
        await db.dispose()


async def test_a_killed_connection_is_unavailable_once_then_replaced(db_url: str) -> None:
    db = Database(db_url, pool_size=1)
    try:
        async with db.fast_tx() as tx:
            first = tx.raw.conn.info.backend_pid
        with _admin(db_url) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (first,)).fetchone() == (True,)
        with pytest.raises(errors.Unavailable) as err:
            async with db.fast_tx() as tx:
                await audit.record(tx, ACTOR, "pg.fast.killed")
        assert err.value.code == "database_unavailable"
        async with db.fast_tx() as tx:
            await audit.record(tx, ACTOR, "pg.fast.revived")
            second = tx.raw.conn.info.backend_pid
        assert second != first
        assert await _count(db, "pg.fast.killed") == 0
        assert await _count(db, "pg.fast.revived") == 1
    finally:
        await db.dispose()


async def test_after_a_restart_one_request_fails_not_one_per_pooled_connection(db_url: str) -> None:
    db = Database(db_url, pool_size=3)
    try:
        held, release = asyncio.Event(), asyncio.Event()
        pids: list[int] = []

        async def hold() -> None:
            async with db.fast_tx() as tx:
                pids.append(tx.raw.conn.info.backend_pid)
                if len(pids) == 3:
                    held.set()
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(3)]
        await asyncio.wait_for(held.wait(), 10)
        release.set()
        await asyncio.gather(*holders)  # three idle connections in the pool now
        with _admin(db_url) as admin:  # every backend killed, as a server restart does
            for pid in pids:
                assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)
        with pytest.raises(errors.Unavailable):
            async with db.fast_tx() as tx:
                await audit.record(tx, ACTOR, "pg.fast.restart")
        async with db.fast_tx() as tx:  # the other idle ones were dropped with the dead one
            await audit.record(tx, ACTOR, "pg.fast.restarted")
            assert tx.raw.conn.info.backend_pid not in pids
        assert await _count(db, "pg.fast.restarted") == 1
    finally:
        await db.dispose()


async def test_a_server_that_refuses_connections_is_unavailable(db_url: str) -> None:
    url = sa.make_url(db_url).set(port=free_port()).render_as_string(hide_password=False)
    db = Database(url)
    try:
        with pytest.raises(errors.Unavailable) as err:
            async with db.fast_tx():
                pass
        assert err.value.code == "database_unavailable"
    finally:
        await db.dispose()


async def test_a_full_pool_is_database_busy(db_url: str) -> None:
    db = Database(db_url, pool_size=1, pool_timeout=0.2)
    held, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with db.fast_tx() as tx:
            await tx.raw.fetch("SELECT 1")
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    try:
        await asyncio.wait_for(held.wait(), 10)
        with pytest.raises(errors.Unavailable) as err:
            async with db.fast_tx():
                pass
        assert err.value.code == "database_busy"
        release.set()
        await asyncio.wait_for(holder, 10)
        async with db.fast_tx() as tx:  # the slot came back
            await audit.record(tx, ACTOR, "pg.fast.free")
        assert await _count(db, "pg.fast.free") == 1
    finally:
        release.set()
        await holder
        await db.dispose()


async def _cancelled_mid_statement(
    db: Database, prepare: Callable[[Any], None] | None = None, on_server: str | None = None
) -> None:
    """A block that recorded an audit row and runs a 30 s statement is cancelled (once its
    statement shows in `pg_stat_activity`, with `on_server`, the test database's URL): it
    ends at once, nothing of it is kept, and the pool's one connection serves the next."""
    running = asyncio.Event()

    async def slow() -> None:
        async with db.fast_tx() as tx:
            if prepare is not None:
                prepare(tx)
            await audit.record(tx, ACTOR, "pg.fast.cancelled")
            running.set()
            await tx.raw.fetch("SELECT pg_sleep(30)")

    t = asyncio.create_task(slow())
    await asyncio.wait_for(running.wait(), 10)
    if on_server is not None:
        url = on_server

        def sleeping() -> bool:
            with _admin(url) as admin:
                found = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query = 'SELECT pg_sleep(30)'"
                ).fetchone()
            return found == (1,)

        await asyncio.to_thread(wait_for, sleeping, 10, "the statement running on the server")
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(t, 10)
    async with db.fast_tx() as tx:
        await audit.record(tx, ACTOR, "pg.fast.next")
    assert await _count(db, "pg.fast.cancelled") == 0
    assert await _count(db, "pg.fast.next") == 1


async def test_a_cancelled_statement_leaves_nothing_and_the_pool_usable(db_url: str) -> None:
    db = Database(db_url, pool_size=1)
    try:
        await _cancelled_mid_statement(db)
    finally:
        await db.dispose()


async def test_a_cancel_that_misses_its_statement_is_sent_again(db_url: str) -> None:
    """A cancel reaches only the statement running when it arrives; one that lands between
    two statements of the block is dropped by the server (seen once in a full run: the
    rollback then waited out a 30 s statement). The first one here is lost that way; the
    rollback must not wait for the statement's end, nor commit anything."""
    db = Database(db_url, pool_size=1)
    sent: list[float] = []

    def lose_the_first_cancel(tx: Any) -> None:
        conn = tx.raw.conn
        real = conn.cancel_safe

        async def lost_first(**kw: Any) -> None:
            sent.append(asyncio.get_running_loop().time())
            if len(sent) > 1:
                await real(**kw)

        conn.cancel_safe = lost_first

    try:
        await _cancelled_mid_statement(db, lose_the_first_cancel, on_server=db_url)
        assert len(sent) >= 2
    finally:
        await db.dispose()


async def test_dispose_closes_idle_connections_and_those_returned_later(db_url: str) -> None:
    db = Database(db_url)
    held, release = asyncio.Event(), asyncio.Event()
    conns: list[Lean] = []

    async def holder() -> None:
        async with db.fast_tx() as tx:
            conns.append(tx.raw)
            await tx.raw.fetch("SELECT 1")
            held.set()
            await release.wait()
            await audit.record(tx, ACTOR, "pg.fast.late")

    async with db.fast_tx() as tx:
        await tx.raw.fetch("SELECT 1")
        conns.append(tx.raw)  # goes back to the pool, idle
    t = asyncio.create_task(holder())
    await asyncio.wait_for(held.wait(), 10)
    assert conns[0] is conns[1]  # the idle one was reused
    async with db.fast_tx() as tx:  # a second connection while the first is held
        await tx.raw.fetch("SELECT 1")
        conns.append(tx.raw)
    await asyncio.wait_for(db.dispose(grace=0), 10)  # gives up waiting for the holder at once
    assert conns[2].closed  # idle: closed by dispose
    assert not conns[1].closed  # still in its transaction
    release.set()
    await asyncio.wait_for(t, 10)  # commits, then its connection is closed, not pooled
    assert conns[1].closed
    with _admin(db_url) as admin:
        seen = admin.execute("SELECT count(*) FROM audit_log WHERE action = 'pg.fast.late'").fetchone()
        assert seen == (1,)


async def test_json_is_written_compact_and_read_back_the_same(db_url: str) -> None:
    """fast_tx connections encode and parse JSON with pydantic (as store.fastpath does on
    SQLite): the same values back, and the same compact UTF-8 text as SQLite stores, where
    json.dumps wrote spaces and \\u escapes."""
    data: dict[str, Any] = {"é": "naïve ☃", "big": 2**70, "f": 0.1, "n": None, "l": [1, {"x": []}], "t": True}
    db = Database(db_url)
    try:
        async with db.fast_tx() as tx:
            entry = await audit.record(tx, ACTOR, "pg.fast.json", details=data)
        async with db.fast_tx() as tx:
            rows = await tx.raw.fetch("SELECT details, details::text FROM audit_log WHERE id = %s", (entry,))
            (value, text), *_ = rows
        assert value == data
        assert text == to_json(data).decode()
    finally:
        await db.dispose()


async def test_a_fast_read_that_fails_raises_and_the_next_one_reads(db_url: str) -> None:
    """Database.fast_read (its own small pool): the rows of each statement, read after the
    Sync; a failing statement raises its error, and the connection, rolled back, serves on."""
    db = Database(db_url)
    try:
        assert db.fast_reads
        assert await db.fast_read([("SELECT %s::int", (1,)), ("SELECT 'two'", ())]) == [[(1,)], [("two",)]]
        with pytest.raises(psycopg.errors.UndefinedTable):
            await db.fast_read([("SELECT 1", ()), ("SELECT * FROM no_such_table", ())])
        assert await db.fast_read([("SELECT count(*) FROM tasks", ())]) == [[(0,)]]
        # Its connections are not the writers': a crowd of readers never holds theirs.
        reader = (await db.fast_read([("SELECT pg_backend_pid()", ())]))[0][0][0]
        async with db.fast_tx() as tx:
            assert tx.raw.conn.info.backend_pid != reader
    finally:
        await db.dispose()
