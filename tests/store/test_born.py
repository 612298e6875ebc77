"""A task created for a parked claim is inserted already claimed on PostgreSQL (store/born.py):
one statement for the creation, its audit row and the claim, with the row, the events and
the lease a claim of it would leave. When the claim would have taken another task first,
or the cached route no longer holds, nothing of that shows: the task is created as without
a claim, and the claimer claims on its own."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from store import catalog, handoff, tasks
from store.audit_models import AuditEntry
from store.db import Database, Tx
from store.handoff import create_handing_off, handoffs
from store.leases import Lease, hash_token
from store.models import Agent, TaskEvent, WorkerQueue
from tests.store.test_pg_round_trips import _alone, _create, _setup, relayed

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


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
        async with db.read() as s:
            row = await tasks.get_task(s, task.id)
            audited = await s.scalar(sa.select(sa.func.count()).where(AuditEntry.target_id == task.id))  # type: ignore[arg-type]
        events = await _events(db, task.id)
        # The row and the answer are what a claim of the pending task leaves.
        assert claimed.task.id == task.id and claimed.agent is not None and claimed.agent.name == "a"
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
            done = await tasks.complete(tx, task.id, Lease(claimed.token, ()), result={"ok": True})
        assert done.status == "completed"
    finally:
        await db.dispose()


async def test_with_another_task_pending_first_the_new_one_is_created_pending(db_url: str) -> None:
    """The claim takes the oldest task first: the statement sees the older one and writes
    the new task as the creation alone does; the claimer is told nothing was handed."""
    db = Database(db_url)
    try:
        _alone(db)
        await _setup(db)
        older = await db.fast_or_full(_create)  # pending, nobody parked
        parked = _park(db)
        task = await create_handing_off(db, _create)
        assert parked.outcome.result() == []  # the claimer claims on its own: the older one
        async with db.read() as s:
            assert (await tasks.get_task(s, task.id)).status == "pending"
            assert (await tasks.get_task(s, older.id)).status == "pending"
            row = await tasks.get_task(s, task.id)
        assert (row.attempt, row.last_seq, row.worker_id, row.lease_token_hash) == (0, 1, None, None)
        assert await _events(db, task.id) == [(1, "status", {"status": "pending", "from": None}, 0)]
        # The queue is busy: for a while its hand-offs go through the claim, which takes
        # the oldest pending task in the creation's own transaction, not in another round.
        assert handoffs(db).crowded("q")
        parked = _park(db)
        newest = await create_handing_off(db, _create)
        (first,) = parked.outcome.result()
        assert first.task.id == older.id
        async with db.read() as s:
            assert (await tasks.get_task(s, newest.id)).status == "pending"
    finally:
        await db.dispose()


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


async def test_a_claimer_gone_before_its_born_task_arrives_gets_it_given_back(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's request ended while the creation ran: the task inserted claimed goes
    back to pending as a worker's own release does (no lease counted lost), for the next."""
    db = Database(db_url)
    try:
        _alone(db)
        await _setup(db)
        parked = _park(db)
        real = handoff.send_born_claimed

        async def as_the_claimer_leaves(*args: Any) -> Any:
            handoffs(db).leave(parked)  # what the claimer's `finally` does when cancelled
            return await real(*args)

        monkeypatch.setattr(handoff, "send_born_claimed", as_the_claimer_leaves)
        task = await create_handing_off(db, _create)
        assert parked.taken and parked.gone
        async with db.read() as s:
            stored = await tasks.get_task(s, task.id)
        assert (stored.status, stored.worker_id, stored.lost_leases) == ("pending", None, 0)
        assert handoffs(db).handed == 0
        async with db.tx() as tx:
            (again,) = await tasks.claim_tasks(tx, "q", "w2", 1, 60, {}, touch=False)
        assert again.task.id == task.id
    finally:
        await db.dispose()
