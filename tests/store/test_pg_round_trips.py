"""Round trips to PostgreSQL per hot-path transaction (store/pg_fast.py's pipeline).

Counted on the wire: the `Database` talks to PostgreSQL through a TCP relay that counts
turns, a turn being the server answering after the client has sent something. Each turn
is a network latency the request waits for (and, on a busy machine, two wake-ups).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest
import sqlalchemy as sa

from board_api.routes import workers
from kernel import errors
from sdk.exchange import ExchangeBody
from store import audit, catalog, events, fastpath, progress, tasks
from store.db import Database, Tx
from store.handoff import create_handing_off, handoffs
from store.leases import Lease
from store.models import Agent, WorkerQueue
from store.peers import WARM_UP

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

ACTOR = audit.Actor("tester", "person")


class Turns:
    """A TCP relay to PostgreSQL counting the server's answers to the client's sends
    (`count`), and the statements the client runs (`statements`)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.count = 0
        self.statements = 0
        self._asked: set[int] = set()  # connections whose client spoke since their last answer

    async def _server(self, conn: int, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if conn in self._asked:
                    self._asked.discard(conn)
                    self.count += 1
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    async def _client(self, conn: int, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """The client's side, message by message (sslmode=disable: plain protocol v3)."""
        try:
            typed = False  # the startup packets have no type byte
            while True:
                kind = await src.readexactly(1) if typed else b""
                head = await src.readexactly(4)
                body = await src.readexactly(struct.unpack("!i", head)[0] - 4)
                if not typed and struct.unpack("!i", body[:4])[0] not in (80877103, 80877104):
                    typed = True  # that was the StartupMessage, not an SSL or GSS request
                if kind in (b"E", b"Q"):  # Execute (extended protocol), Query (simple)
                    self.statements += 1
                self._asked.add(conn)
                dst.write(kind + head + body)
                await dst.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            dst.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        conn = id(writer)
        await asyncio.gather(self._client(conn, reader, up_writer), self._server(conn, up_reader, writer))


@contextlib.asynccontextmanager
async def relayed(db_url: str) -> AsyncGenerator[tuple[Database, Turns]]:
    url = sa.make_url(db_url)
    turns = Turns(url.host or "127.0.0.1", url.port or 5432)
    server = await asyncio.start_server(turns.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    relay = url.set(port=port).update_query_dict({"sslmode": "disable"})
    db = Database(relay.render_as_string(hide_password=False))
    try:
        yield db, turns
    finally:
        await db.dispose()
        server.close()


async def _setup(db: Database) -> None:
    async with db.tx() as tx:
        await catalog.create_queue(tx, WorkerQueue(name="q"))
        await catalog.create_agent(tx, Agent(name="a", runtime="noop", default_queue="q"))


async def _create(tx: Tx) -> Any:
    """What `POST /tasks` does in its transaction."""
    task = await tasks.create_task(tx, tasks.NewTask(prompt="p", agent="a"))
    await audit.record(tx, ACTOR, "task.create", "task", task.id, {"agent": "a"})
    return task


async def test_a_task_creation_is_one_round_trip(db_url: str) -> None:
    """The task, its event, the audit row, the notes and the commit go together: before the
    pipeline, each was a turn of its own (6, with BEGIN, and the agent's read); the agent's
    route comes from the process's cache, checked in the same statement (before: a read of
    its own, a turn more)."""
    async with relayed(db_url) as (db, turns):
        await _setup(db)
        for _ in range(3):  # a warm connection, its statements prepared, the route cached
            await db.fast_or_full(_create)
        before, statements = turns.count, turns.statements
        await db.fast_or_full(_create)
        assert turns.count - before == 1
        # The task, its event, the route's check, the audit row and the pg_notify in one
        # statement. No BEGIN, no COMMIT: the pipeline's Sync commits.
        assert turns.statements - statements == 1
        assert db.fast_fallbacks == {}


async def _exchange(tx: Tx, held: list[tasks.Claimed], limit: int) -> list[tasks.Claimed]:
    """What `POST /worker-queues/{q}/exchange` does: report `held`, claim up to `limit`."""
    sent = await tasks.send_reports(
        tx, [tasks.Report(c.task.id, Lease(c.token, ()), result=None) for c in held]
    )
    claimed = await tasks.claim_tasks(tx, "q", "w", limit, 60, {}, touch=False)
    done = await sent()
    assert len(done) == len(held) and not [d for d in done if isinstance(d, Exception)]
    return claimed


@pytest.mark.parametrize("batch", [1, 4])
async def test_an_exchange_is_two_round_trips_for_any_batch(db_url: str, batch: int) -> None:
    """The worker's exchange: complete `batch` tasks and claim as many. The reports are sent
    without waiting, and read after the claim, whose statement brings the agents' rows
    too; then the notes and the commit. Before: a round trip per report, the claim, the
    agents, the commit (4 for one report, 7 for four); then a statement per report (6 for
    four)."""
    async with relayed(db_url) as (db, turns):
        await _setup(db)
        for _ in range(6 * batch):
            await db.fast_or_full(_create)
        held = await db.fast_or_full(functools.partial(_exchange, held=[], limit=batch))
        for _ in range(3):
            held = await db.fast_or_full(functools.partial(_exchange, held=held, limit=batch))
        before, statements = turns.count, turns.statements
        done = [c.task.id for c in held]
        held = await db.fast_or_full(functools.partial(_exchange, held=held, limit=batch))
        assert len(held) == batch and all(c.agent is not None and c.agent.name == "a" for c in held)
        assert turns.count - before == 2
        # The reports' UPDATE with their events (one statement for any number of them:
        # store.completions), the claim with theirs and the agents, one pg_notify.
        assert turns.statements - statements == 3
        assert db.fast_fallbacks == {}
        async with db.read() as s:
            for tid in done:
                assert (await tasks.get_task(s, tid)).status == "completed"


async def test_a_refused_report_in_an_exchange_is_told_and_the_others_apply(db_url: str) -> None:
    """A report whose lease is no longer the task's is refused alone (it is read after the
    claim, then explained), and the batch's other reports and the claim still commit."""
    async with relayed(db_url) as (db, _):
        await _setup(db)
        for _ in range(4):
            await db.fast_or_full(_create)
        held = await db.fast_or_full(functools.partial(_exchange, held=[], limit=2))

        async def exchange(tx: Tx) -> tuple[list[Any], list[tasks.Claimed]]:
            stale = tasks.Report(held[0].task.id, Lease("not-the-token", ()), result=None)
            good = tasks.Report(held[1].task.id, Lease(held[1].token, ()), result={"ok": 1})
            sent = await tasks.send_reports(tx, [stale, good])
            claimed = await tasks.claim_tasks(tx, "q", "w", 2, 60, {}, touch=False)
            return await sent(), claimed

        (refused, applied), claimed = await db.fast_or_full(exchange)
        assert isinstance(refused, errors.StaleLease) and not isinstance(applied, Exception)
        assert applied.status == "completed" and len(claimed) == 2
        async with db.read() as s:
            assert (await tasks.get_task(s, held[0].task.id)).status == "running"
            assert (await tasks.get_task(s, held[1].task.id)).result == {"ok": 1}


def _alone(db: Database) -> None:
    """The replica hears no other (store.peers): its commits need no NOTIFY, and rows may be
    read after the commit (Tx.deferrable)."""
    db.hub.peers.listening()
    db.hub.peers.clock = lambda: time.monotonic() + WARM_UP + 1


def _route_exchange(held: list[tasks.Claimed], limit: int, stale: int = -1) -> Any:
    """The exchange route's own work (board_api.routes.workers): report `held` (the one at
    index `stale` with a lease that is no longer its), claim up to `limit`."""
    reports = [
        tasks.Report(c.task.id, Lease("not-the-token" if i == stale else c.token, ()), result={"n": i})
        for i, c in enumerate(held)
    ]
    body = ExchangeBody(worker_id="w", max_tasks=limit)
    return functools.partial(
        workers._report_and_claim,  # pyright: ignore[reportPrivateUsage]
        "q",
        body,
        reports,
        60,
        {},
        False,
        None,
        None,
    )


@pytest.mark.parametrize("batch", [1, 4])
async def test_an_exchange_alone_is_one_round_trip(db_url: str, batch: int) -> None:
    """With no other replica listening, the exchange's reports, its claim and the Sync go
    out together, and their rows are read after the commit: one round trip (two with
    another replica, whose NOTIFY needs the rows first)."""
    async with relayed(db_url) as (db, turns):
        _alone(db)
        await _setup(db)
        for _ in range(6 * batch):
            await db.fast_or_full(_create)
        _, held = await db.fast_or_full(_route_exchange([], batch))
        for _ in range(2):
            _, held = await db.fast_or_full(_route_exchange(held, batch))
        before, statements = turns.count, turns.statements
        reported = [c.task.id for c in held]
        done, held = await db.fast_or_full(_route_exchange(held, batch))
        assert turns.count - before == 1
        assert turns.statements - statements == 2  # the reports' UPDATE, the claim: no NOTIFY
        assert [t.id for t in done] == reported and all(t.status == "completed" for t in done)
        assert len(held) == batch and all(c.agent is not None and c.agent.name == "a" for c in held)
        assert db.fast_fallbacks == {}
        async with db.read() as s:
            for tid in reported:
                assert (await tasks.get_task(s, tid)).status == "completed"
            for c in held:
                assert (await tasks.get_task(s, c.task.id)).status == "running"


async def test_a_refused_report_read_after_the_commit_is_explained_and_the_rest_holds(db_url: str) -> None:
    """Read after the commit, a refused report is explained by a transaction of its own:
    the same StaleLease as before, the other report applied and the claim kept, and the
    exchange not run again in a full transaction."""
    async with relayed(db_url) as (db, _):
        _alone(db)
        await _setup(db)
        for _ in range(4):
            await db.fast_or_full(_create)
        _, held = await db.fast_or_full(_route_exchange([], 2))
        (refused, applied), claimed = await db.fast_or_full(_route_exchange(held, 2, stale=0))
        assert isinstance(refused, errors.StaleLease) and not isinstance(applied, Exception)
        assert applied.status == "completed" and len(claimed) == 2
        assert db.fast_fallbacks == {}
        async with db.read() as s:
            assert (await tasks.get_task(s, held[0].task.id)).status == "running"
            assert (await tasks.get_task(s, held[1].task.id)).result == {"n": 1}
            for c in claimed:
                assert (await tasks.get_task(s, c.task.id)).status == "running"


async def test_a_hand_off_alone_is_one_round_trip(db_url: str) -> None:
    """A creation that hands its task to a parked claim (store.handoff): the task's
    statement, the claim and the Sync together, the claim's rows read after the commit."""
    async with relayed(db_url) as (db, turns):
        _alone(db)
        await _setup(db)

        async def claim(tx: Tx) -> Any:
            return await tasks.send_claim_tasks(tx, "q", "w", 1, 60, {}, touch=False)

        registry = handoffs(db)
        for _ in range(4):  # the route cached, the statements prepared: the last one counted
            parked = registry.park("q", claim)
            parked.outcome.add_done_callback(lambda _, p=parked: registry.leave(p))
            before, statements = turns.count, turns.statements
            task = await create_handing_off(db, _create)
        assert turns.count - before == 1
        assert turns.statements - statements == 2  # the creation's, the claim's
        claimed = parked.outcome.result()
        assert claimed is not None and [c.task.id for c in claimed] == [task.id]
        assert claimed[0].agent is not None and claimed[0].task.status == "running"
        assert db.fast_fallbacks == {}


async def test_a_workers_events_are_one_statement_with_their_task(db_url: str) -> None:
    """`POST /tasks/{id}/events`: the fenced UPDATE that takes the seqs and the INSERT of
    the events are one statement (it and one pg_notify; before: BEGIN, 2, notify, COMMIT)."""
    async with relayed(db_url) as (db, turns):
        await _setup(db)
        await db.fast_or_full(_create)
        (held,) = await db.fast_or_full(
            functools.partial(
                tasks.claim_tasks, queue="q", worker_id="w", limit=1, lease_seconds=60, touch=False
            )
        )
        lease = Lease(held.token, ())
        batch = [("log", {"line": "one"}), ("log", {"line": "two", "token": "sk-" + "a" * 40})]
        for _ in range(3):
            await db.fast_or_full(
                functools.partial(events.append, task_id=held.task.id, events=batch, lease=lease)
            )
        before, statements = turns.count, turns.statements
        last, _ = await db.fast_or_full(
            functools.partial(events.append, task_id=held.task.id, events=batch, lease=lease)
        )
        assert (turns.count - before, turns.statements - statements) == (2, 2)
        assert last == 2 + 4 * 2  # created, claimed, then 4 batches of 2
        async with db.read() as s:
            logged = await events.list_after(s, held.task.id, last - 2)
        assert [(e.seq, e.kind, e.attempt) for e in logged] == [(last - 1, "log", 1), (last, "log", 1)]
        assert "sk-" not in str(logged[1].data)  # masked on the way in, as before


async def test_a_post_of_many_tasks_events_is_a_statement_for_all_and_one_for_their_events(
    db_url: str,
) -> None:
    """`POST /worker-queues/{queue}/events` with 5 tasks (store/progress.py): one UPDATE for
    every task's seqs, one INSERT of every event, one pg_notify; before: 5 + 1."""
    async with relayed(db_url) as (db, turns):
        await _setup(db)
        for _ in range(5):
            await db.fast_or_full(_create)
        held = await db.fast_or_full(
            functools.partial(
                tasks.claim_tasks, queue="q", worker_id="w", limit=5, lease_seconds=60, touch=False
            )
        )
        items = [(c.task.id, Lease(c.token, ()), [("log", {"n": 1}), ("log", {"n": 2})], None) for c in held]
        for _ in range(3):
            await db.fast_or_full(lambda tx: progress.worker_events_many(tx, items))
        before, statements = turns.count, turns.statements
        out = await db.fast_or_full(lambda tx: progress.worker_events_many(tx, items))
        assert out == [(2 + 4 * 2, False)] * 5  # created, claimed, then 4 posts of 2
        assert (turns.count - before, turns.statements - statements) == (2, 3)


async def test_a_followers_first_reads_are_a_round_trip_each(db_url: str) -> None:
    """Opening a task's stream: its 404 check, then its feed's first read (the log, and the
    task's status and last seq: has it ended?), through Database.fast_read: one round trip
    each, the statements and the Sync that ends their transaction sent together."""
    async with relayed(db_url) as (db, turns):
        await _setup(db)
        task = await db.fast_or_full(_create)
        for _ in range(3):  # a warm connection, its statements prepared
            await fastpath.log_after(db, task.id, 0, 500, progress=True)
        before, statements = turns.count, turns.statements
        assert await fastpath.task_progress(db, task.id) == ("pending", 1)
        assert (turns.count - before, turns.statements - statements) == (1, 1)
        before, statements = turns.count, turns.statements
        rows, progress = await fastpath.log_after(db, task.id, 0, 500, progress=True)
        assert (turns.count - before, turns.statements - statements) == (1, 2)
        assert [(r["seq"], r["kind"]) for r in rows] == [(1, "status")] and progress == ("pending", 1)
        assert await fastpath.log_after(db, task.id, 1, 500, progress=False) == ([], None)
        assert await fastpath.task_progress(db, "no-such-task") is None
