"""A task created while a worker's claim is parked is claimed in its creation's transaction
(store/handoff.py): one commit between the client's call and the worker's answer."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kernel import errors
from store import audit, catalog, handoff, tasks
from store.db import Database, Tx
from store.handoff import Parked, create_handing_off, handoffs
from store.models import Agent, Task, WorkerQueue

ACTOR = audit.Actor("tester", "person")


async def _setup(db: Database) -> None:
    async with db.tx() as tx:
        for q in ("q", "other"):
            await catalog.create_queue(tx, WorkerQueue(name=q))
        await catalog.create_agent(tx, Agent(name="a", runtime="noop", default_queue="q"))


async def _create(tx: Tx, fail: bool = False, agent: str = "a") -> Task:
    """What `POST /tasks` does in its transaction; `fail` makes it fail after the insert."""
    task = await tasks.create_task(tx, tasks.NewTask(prompt="p", agent=agent))
    await audit.record(tx, ACTOR, "task.create", "task", task.id, {"agent": "a"})
    if fail:
        raise errors.Invalid("refused after the insert", code="validation_error")
    return task


def _claim(worker: str, limit: int = 1):  # type: ignore[no-untyped-def]
    async def claim(tx: Tx) -> Callable[[], Awaitable[list[tasks.Claimed]]]:
        return await tasks.send_claim_tasks(tx, "q", worker, limit, 60, {}, touch=False)

    return claim


def _park(db: Database, queue: str, claim: Any) -> Parked:
    """A claim parked as the route parks it: it leaves (answered) once its outcome is in."""
    parked = handoffs(db).park(queue, claim)
    parked.outcome.add_done_callback(lambda _: handoffs(db).leave(parked))
    return parked


class Transactions:
    """Counts the units of work the database runs (a spy on `fast_or_full`)."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = db.fast_or_full

        async def counted(work: Any) -> Any:
            self.count += 1
            return await real(work)

        monkeypatch.setattr(db, "fast_or_full", counted)


async def _task(db: Database, task_id: str) -> Task:
    async with db.read() as s:
        return await tasks.get_task(s, task_id)


async def test_a_task_created_while_a_claim_is_parked_is_claimed_in_its_creation(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _setup(db)
    other = _park(db, "other", _claim("w-other"))  # another queue's: not taken
    parked = _park(db, "q", _claim("w1"))
    later = _park(db, "q", _claim("w2"))  # parked after w1: w1 goes first
    txs = Transactions(db, monkeypatch)
    task = await create_handing_off(db, _create)
    assert txs.count == 1  # the creation and the claim: one transaction, one commit
    assert task.status == "pending"  # the creation's own answer: the task as created
    claimed = parked.outcome.result()
    assert claimed is not None and [c.task.id for c in claimed] == [task.id]
    assert claimed[0].agent is not None and claimed[0].agent.name == "a" and claimed[0].token
    stored = await _task(db, task.id)
    assert (stored.status, stored.worker_id, stored.attempt) == ("running", "w1", 1)
    assert not later.taken and not later.outcome.done() and not other.taken
    assert handoffs(db).handed == 1 and parked.gone  # w1 answered, it left
    # The next creation goes to w2.
    second = await create_handing_off(db, _create)
    assert [c.task.id for c in later.outcome.result() or []] == [second.id]
    assert handoffs(db).take("q") is None  # nobody left parked on q


async def test_the_worker_handed_a_task_is_answered_before_its_creator(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The creation returns only once the claimer has left, its answer written in that turn
    of the event loop; a claimer that never leaves holds it `ANSWER_FIRST` at most."""
    await _setup(db)
    parked = handoffs(db).park("q", _claim("w1"))
    creating = asyncio.create_task(create_handing_off(db, _create))
    async with asyncio.timeout(10):
        claimed = await asyncio.shield(parked.outcome)
    assert claimed and claimed[0].task.status == "running"
    for _ in range(50):  # turns of the event loop, not time: the creator still waits
        await asyncio.sleep(0)
    assert not creating.done()
    handoffs(db).leave(parked)  # the claimer's answer is written: now its creator's
    async with asyncio.timeout(10):
        task = await creating
    assert [c.task.id for c in claimed] == [task.id]

    monkeypatch.setattr(handoff, "ANSWER_FIRST", 0.01)
    stuck = handoffs(db).park("q", _claim("w2"))
    async with asyncio.timeout(10):
        second = await create_handing_off(db, _create)
    assert [c.task.id for c in stuck.outcome.result() or []] == [second.id] and not stuck.gone


async def test_a_creation_that_fails_before_the_claim_leaves_it_parked(db: Database) -> None:
    await _setup(db)
    parked = handoffs(db).park("q", _claim("w1"))
    with pytest.raises(errors.NotFound):  # refused before the insert
        await create_handing_off(db, functools.partial(_create, agent="nobody"))
    assert not parked.taken and not parked.outcome.done()
    assert handoffs(db).take("q") is parked


async def test_a_creation_that_fails_after_its_insert_tells_a_claim_it_took(db: Database) -> None:
    """PostgreSQL claims after the creation, which failed first: the claim stays parked.
    SQLite took the claim for the task's INSERT (store/born.py), which is rolled back: the
    claimer hears None, and claims on its own."""
    await _setup(db)
    parked = handoffs(db).park("q", _claim("w1"), worker_id="w1", lease_seconds=60)
    with pytest.raises(errors.Invalid):
        await create_handing_off(db, functools.partial(_create, fail=True))
    async with db.read() as s:
        assert (await tasks.list_tasks(s))[0] == []
    if db.is_sqlite:
        assert parked.taken and parked.outcome.result() is None
    else:
        assert not parked.taken and not parked.outcome.done()


async def test_a_creation_that_fails_after_the_claim_claims_nothing_and_says_so(db: Database) -> None:
    """The transaction fails after the parked claim ran in it (the database went away, say):
    nothing of either is stored, and the claimer hears None and claims on its own."""
    await _setup(db)
    claim = _claim("w1")

    async def claim_then_fail(tx: Tx) -> Callable[[], Awaitable[list[tasks.Claimed]]]:
        assert await claim(tx)
        raise RuntimeError("the connection dropped")

    parked = handoffs(db).park("q", claim_then_fail)
    with pytest.raises(RuntimeError):
        await create_handing_off(db, _create)
    assert parked.taken and parked.outcome.result() is None
    async with db.read() as s:
        assert (await tasks.list_tasks(s))[0] == []
    assert handoffs(db).handed == 0


async def test_a_refused_claim_does_not_refuse_the_creation(db: Database) -> None:
    await _setup(db)

    async def refused(tx: Tx) -> list[tasks.Claimed]:
        raise errors.Forbidden("this key may not claim here", code="queue_not_allowed")

    parked = handoffs(db).park("q", refused)
    task = await create_handing_off(db, _create)
    assert parked.outcome.result() is None
    assert (await _task(db, task.id)).status == "pending"


async def test_a_claimer_gone_before_its_hand_off_gets_the_task_given_back(db: Database) -> None:
    """The worker's request ended (cancelled) while the creation ran: the task goes back to
    pending, as a worker's own release does."""
    await _setup(db)
    claim = _claim("w1")

    async def claim_as_the_claimer_leaves(tx: Tx) -> Callable[[], Awaitable[list[tasks.Claimed]]]:
        handoffs(db).leave(parked)  # what the claimer's `finally` does when it is cancelled
        return await claim(tx)

    parked = handoffs(db).park("q", claim_as_the_claimer_leaves)
    task = await create_handing_off(db, _create)
    assert parked.taken and parked.gone
    stored = await _task(db, task.id)
    # Handed back: no lease was lost (the retry limit counts those), nobody holds it.
    assert (stored.status, stored.worker_id, stored.lost_leases) == ("pending", None, 0)
    assert handoffs(db).handed == 0
    async with db.tx() as tx:
        (again,) = await tasks.claim_tasks(tx, "q", "w2", 1, 60, {}, touch=False)
    assert again.task.id == task.id


async def test_a_parked_claim_that_left_is_never_taken(db: Database) -> None:
    await _setup(db)
    parked = handoffs(db).park("q", _claim("w1"))
    handoffs(db).leave(parked)
    task = await create_handing_off(db, _create)
    assert not parked.taken and (await _task(db, task.id)).status == "pending"
