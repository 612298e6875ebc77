"""A task created for a parked claim is inserted already claimed (store/born.py): on
PostgreSQL one statement for the creation, its audit row and the claim, on SQLite no UPDATE
after the INSERT; either way with the row, the events and the lease a claim of it would
leave. When the claim would have taken another task first, or the cached route no longer
holds, nothing of that shows: the task is created as without a claim, and the claimer
claims on its own."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from store import catalog, handoff, tasks
from store import fastdriver as fd
from store.audit_models import AuditEntry
from store.db import Database, Tx
from store.handoff import create_handing_off, handoffs
from store.leases import Lease, hash_token
from store.models import Agent, TaskEvent, WorkerQueue
from tests.store.plans import generic_plan, reads_only_its_own
from tests.store.test_pg_round_trips import _alone, _create, _setup, relayed

PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


async def _claim(tx: Tx) -> Any:
    return await tasks.send_claim_tasks(tx, "q", "w", 1, 60, {}, touch=False)


def _park(db: Database, *, born: bool = True) -> Any:
    registry = handoffs(db)
    kw: dict[str, Any] = {"worker_id": "w", "lease_seconds": 60.0} if born else {}
    parked = registry.park("q", _claim, **kw)
    parked.outcome.add_done_callback(lambda _: registry.leave(parked))
    return parked


async def _events(db: Database, task_id: str) -> list[tuple[int, str, dict[str, Any], int]]:
    async with db.read() as s:
        rows = await s.execute(
            sa.select(TaskEvent.seq, TaskEvent.kind, TaskEvent.data, TaskEvent.attempt)  # type: ignore[arg-type]
            .where(TaskEvent.task_id == task_id)
            .order_by(TaskEvent.seq)  # type: ignore[arg-type]
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


@PG
async def test_a_handed_off_task_is_inserted_claimed_in_one_statement(db_url: str) -> None:
    async with relayed(db_url) as (db, turns):
        _alone(db)
        await _setup(db)
        for _ in range(3):  # warm: the route cached, the statements prepared
            parked = _park(db)
            await create_handing_off(db, _create)
        parked = _park(db)
        before, statements = turns.count, turns.statements
        task = await create_handing_off(db, _create)
        assert turns.count - before == 1
        assert turns.statements - statements == 1  # was 2: the creation's, then the claim's UPDATE
        (claimed,) = parked.outcome.result()
        assert db.fast_fallbacks == {}
    db = Database(db_url)
    try:
        await _as_a_claim_leaves(db, task.id, claimed)
    finally:
        await db.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_handed_off_task_is_inserted_claimed_on_sqlite(db: Database) -> None:
    """SQLite runs the INSERT at once: the claim is taken before it, and no UPDATE of the
    row follows (it moved the row's index entries a second time, WAL pages at the commit)."""
    await _setup(db)
    parked = _park(db)
    conn = db._fast.connection()._conn  # pyright: ignore[reportPrivateUsage, reportOptionalMemberAccess]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        task = await create_handing_off(db, _create)
    finally:
        conn.set_trace_callback(None)
    assert [s.split()[0] for s in statements if s.split()[0] in ("UPDATE", "INSERT")] == ["INSERT"] * 4
    assert task.status == "pending"  # the creator's answer: the task as created
    (claimed,) = parked.outcome.result()
    await _as_a_claim_leaves(db, task.id, claimed)


async def _as_a_claim_leaves(db: Database, task_id: str, claimed: Any) -> None:
    """The stored row and the worker's answer are what a claim of the pending task leaves,
    and the worker's token holds the lease."""
    async with db.read() as s:
        row = await tasks.get_task(s, task_id)
        audited = await s.scalar(sa.select(sa.func.count()).where(AuditEntry.target_id == task_id))  # type: ignore[arg-type]
    events = await _events(db, task_id)
    assert claimed.task.id == task_id and claimed.agent is not None and claimed.agent.name == "a"
    for t in (row, claimed.task):
        assert (t.status, t.phase, t.attempt, t.last_seq, t.worker_id) == (
            "running",
            "planning",
            1,
            2,
            "w",
        )
        assert t.lease_token_hash == hash_token(claimed.token)
        assert t.started_at is not None and t.lease_expires_at is not None
        assert 59 <= (t.lease_expires_at - t.started_at).total_seconds() <= 60
    assert events == [
        (1, "status", {"status": "pending", "from": None}, 0),
        (2, "status", {"status": "running", "from": "pending", "worker_id": "w"}, 1),
    ]
    assert audited == 1
    async with db.tx() as tx:  # the worker's token holds the lease
        done = await tasks.complete(tx, task_id, Lease(claimed.token, ()), result={"ok": True})
    assert done.status == "completed"


async def test_with_another_task_pending_first_the_new_one_is_created_pending(db_url: str) -> None:
    """The claim takes the oldest task first: the statement sees the older one and writes
    the new task as the creation alone does. On PostgreSQL the claimer is told nothing was
    handed (the statement has gone: it claims on its own); on SQLite, where nothing has gone
    yet, the usual claim runs in the same transaction and hands it the older one."""
    db = Database(db_url)
    try:
        _alone(db)
        await _setup(db)
        older = await db.fast_or_full(_create)  # pending, nobody parked
        parked = _park(db)
        task = await create_handing_off(db, _create)
        handed = [c.task.id for c in parked.outcome.result() or ()]
        assert handed == ([older.id] if db.is_sqlite else [])
        async with db.read() as s:
            assert (await tasks.get_task(s, task.id)).status == "pending"
            assert (await tasks.get_task(s, older.id)).status == ("running" if db.is_sqlite else "pending")
            row = await tasks.get_task(s, task.id)
        assert (row.attempt, row.last_seq, row.worker_id, row.lease_token_hash) == (0, 1, None, None)
        assert await _events(db, task.id) == [(1, "status", {"status": "pending", "from": None}, 0)]
        # The queue is busy: for a while its hand-offs go through the claim, which takes
        # the oldest pending task in the creation's own transaction, not in another round.
        assert handoffs(db).crowded("q")
        parked = _park(db)
        newest = await create_handing_off(db, _create)
        (first,) = parked.outcome.result()
        assert first.task.id == (task.id if db.is_sqlite else older.id)
        async with db.read() as s:
            assert (await tasks.get_task(s, newest.id)).status == "pending"
    finally:
        await db.dispose()


@PG
async def test_a_stale_cached_route_fails_the_statement_and_the_creation_still_lands(db_url: str) -> None:
    """The cached route is checked in the born statement as in the creation's own: an agent
    moved to another queue since fails it, and the creation runs again in a full
    transaction, where the claim is the usual one (on the old queue: nothing for it)."""
    db = Database(db_url)
    try:
        _alone(db)
        await _setup(db)
        parked = _park(db)
        await create_handing_off(db, _create)  # caches the route (queue q)
        assert parked.outcome.result()
        async with db.tx() as tx:
            await catalog.create_queue(tx, WorkerQueue(name="q2"))
            agent = await catalog.get_agent(tx.session, "a")
            agent.default_queue = "q2"
            tx.session.add(agent)
        parked = _park(db)
        task = await create_handing_off(db, _create)
        assert parked.outcome.result() == []
        assert task.queue == "q2" and task.status == "pending"
        assert sum(db.fast_fallbacks.values()) == 1
    finally:
        await db.dispose()


async def test_a_claim_that_cannot_be_born_claims_as_before(db_url: str) -> None:
    """A parked claim that names no worker (an SDK's claim without hand-off details) takes
    the usual path: the creation's statement, then the claim's."""
    db = Database(db_url)
    try:
        _alone(db)
        await _setup(db)
        parked = _park(db, born=False)
        task = await create_handing_off(db, _create)
        (claimed,) = parked.outcome.result()
        assert claimed.task.id == task.id and claimed.task.status == "running"
        assert [e[0] for e in await _events(db, task.id)] == [1, 2]
    finally:
        await db.dispose()


async def test_a_task_that_needs_something_is_left_to_the_usual_claim(db_url: str) -> None:
    """Whether the worker meets a task's needs is the claim's to decide (store/prereqs.py)."""
    db = Database(db_url)
    try:
        _alone(db)
        async with db.tx() as tx:
            await catalog.create_queue(tx, WorkerQueue(name="q"))
            await catalog.create_agent(
                tx, Agent(name="a", runtime="noop", default_queue="q", requires={"bins": ["sh"]})
            )
        parked = _park(db)
        task = await create_handing_off(db, _create)
        assert task.needs is not None
        outcome = parked.outcome.result()
        assert outcome is not None  # the usual claim ran (this worker reports no capabilities)
        assert [c.task.id for c in outcome] == [task.id]
    finally:
        await db.dispose()


@PG
async def test_a_claimer_gone_before_its_born_task_arrives_gets_it_given_back(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's request ended while the creation ran (its `finally` leaves): the task
    inserted claimed goes back to pending as a worker's own release does (no lease counted
    lost), for the next."""
    db = Database(db_url)
    try:
        _alone(db)
        await _setup(db)
        parked = _park(db)
        real = handoff.send_born_claimed

        async def as_the_statement_goes(*args: Any) -> Any:
            handoffs(db).leave(parked)
            return await real(*args)

        monkeypatch.setattr(handoff, "send_born_claimed", as_the_statement_goes)
        await _given_back(db, parked, await create_handing_off(db, _create))
    finally:
        await db.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_claimer_gone_after_its_task_was_inserted_claimed_gets_it_given_back(db: Database) -> None:
    """SQLite inserts the task claimed within the creation itself: the claimer leaves after."""
    await _setup(db)
    parked = _park(db)

    async def as_the_claimer_leaves(tx: Tx) -> Any:
        task = await _create(tx)
        handoffs(db).leave(parked)
        return task

    await _given_back(db, parked, await create_handing_off(db, as_the_claimer_leaves))


async def _given_back(db: Database, parked: Any, task: Any) -> None:
    assert parked.taken and parked.gone
    async with db.read() as s:
        stored = await tasks.get_task(s, task.id)
    assert (stored.status, stored.worker_id, stored.lost_leases) == ("pending", None, 0)
    assert handoffs(db).handed == 0
    async with db.tx() as tx:
        (again,) = await tasks.claim_tasks(tx, "q", "w2", 1, 60, {}, touch=False)
    assert again.task.id == task.id


@PG
@pytest.mark.parametrize(
    ("queue", "status"),
    [("other", "pending"), ("q", "completed")],
    ids=["pending_elsewhere", "finished_here"],
)
async def test_the_pending_check_reads_the_claim_index_however_full_the_table(
    db_url: str, queue: str, status: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The born statement asks whether a task is pending on its queue. After a few runs
    PostgreSQL plans a prepared statement once for any parameters (its generic plan), from
    the columns' statistics: `NOT EXISTS (...)` became a scan of the whole table (30 ms a
    creation beside 50,000 tasks pending on another queue), `... ORDER BY id LIMIT 1` a
    walk of the primary key (176 ms beside 1,000,000 finished tasks). Here, 3,000 tasks
    pending on another queue, or finished on this one, and the generic plan forced: the
    statement reads none of their rows. (At this size the planner prefers the claim index
    for the `ORDER BY id` form too: the million-row case is `make bench`'s, bench/scale.py.)"""
    sent: list[tuple[bytes, list[Any]]] = []
    real = fd.Postgres.send

    async def spy(self: fd.Postgres, sql: str | bytes, params: Any) -> Any:
        if isinstance(sql, bytes) and b" AS free)" in sql:
            sent.append((sql, list(params)))
        return await real(self, sql, params)

    monkeypatch.setattr(fd.Postgres, "send", spy)
    db = Database(db_url)
    try:
        _alone(db)
        await _setup(db)
        _park(db)
        task = await create_handing_off(db, _create)
    finally:
        await db.dispose()
    ((sql, params),) = sent
    on_tasks = generic_plan(db_url, sql, params, crowd=(task.id, queue, status), rows=3000)
    assert reads_only_its_own(on_tasks)
    inserted = [n["Actual Rows"] for n in on_tasks if n.get("Operation") == "Insert"]
    assert inserted == [1]  # and it did insert the task
