"""A worker's parked claim (board_api/routes/workers.py `_parked`) and the creations that
may hand it a task (store/handoff.py), on the event loop they share."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request
from starlette.types import Message

from board_api.app import create_app
from board_api.routes import workers
from kernel.settings import Settings
from sdk.schemas import ClaimBody
from store import audit, catalog, tasks
from store.auth import Principal
from store.db import Database, Tx
from store.handoff import create_handing_off, handoffs
from store.models import Agent, Task, WorkerQueue

ACTOR = audit.Actor("tester", "person")


class Worker:
    """The worker's side of its request, its body read: `receive` gives nothing more
    until the worker disconnects (`leave()`), as uvicorn's does."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.request = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, self.receive)

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self.gone.set()


async def _setup(db: Database) -> None:
    async with db.tx() as tx:
        await catalog.create_queue(tx, WorkerQueue(name="q"))
        await catalog.create_agent(tx, Agent(name="a", runtime="noop", default_queue="q"))


async def _create(tx: Tx) -> Task:
    task = await tasks.create_task(tx, tasks.NewTask(prompt="p", agent="a"))
    await audit.record(tx, ACTOR, "task.create", "task", task.id, {"agent": "a"})
    return task


def _park(db: Database, worker: Worker, wait: float = 30) -> asyncio.Task[Any]:
    body = ClaimBody(worker_id="w1", max_tasks=1, wait_seconds=wait)
    version = db.hub.version("queue:q")
    return asyncio.create_task(
        workers._parked("q", body, worker.request, db, 60, None, "queue:q", version, wait)
    )


async def _parked(db: Database, claim: asyncio.Task[Any]) -> None:
    """The claim's task has run to its first wait, where it is parked (one turn)."""
    await asyncio.sleep(0)
    assert not claim.done() and handoffs(db).parked("q") == 1


async def _stored(db: Database, task_id: str) -> tuple[str, str | None]:
    async with db.read() as s:
        stored = await tasks.get_task(s, task_id)
    return stored.status, stored.worker_id


async def test_a_parked_claim_is_handed_a_task_and_its_worker_answered_first(db: Database) -> None:
    await _setup(db)
    worker = Worker()
    claim = _park(db, worker)
    await _parked(db, claim)
    task = await create_handing_off(db, _create)
    assert claim.done()  # the creation returned once its worker had its answer
    assert [c.task.id for c in claim.result()] == [task.id]
    assert await _stored(db, task.id) == ("running", "w1")


async def test_a_worker_that_leaves_while_parked_is_withdrawn_at_once(db: Database) -> None:
    """No creation hands a task to a worker that is gone (it would be given back, or wait
    for its lease to expire): its claim ends as it leaves, not at its next wake-up."""
    await _setup(db)
    worker = Worker()
    claim = _park(db, worker)
    await _parked(db, claim)
    worker.leave()
    # Well before the claim's own re-check of its queue (the only wake-up it had before).
    async with asyncio.timeout(workers.CLAIM_RECHECK / 2):
        assert await claim is None
    assert not handoffs(db).parked("q")
    task = await create_handing_off(db, _create)
    assert await _stored(db, task.id) == ("pending", None)


async def test_a_claim_woken_by_its_queue_is_handed_nothing_after(db: Database) -> None:
    """Woken by its queue (another replica's task, say), the claim claims on its own next:
    a creation then must not claim for it too, or that task, answered to nobody, would wait
    for its lease to expire and run again (tests/ops/test_load.py found it)."""
    await _setup(db)
    worker = Worker()
    claim = _park(db, worker)
    await _parked(db, claim)
    db.hub.publish("queue:q")
    task = await create_handing_off(db, _create)
    async with asyncio.timeout(10):
        handed = await claim
    # Taken before the claim woke (the creation ran first), or not at all: never claimed
    # for it without its answer saying so.
    if handed:
        assert [c.task.id for c in handed] == [task.id]
        assert await _stored(db, task.id) == ("running", "w1")
    else:
        assert await _stored(db, task.id) == ("pending", None)


async def test_a_claim_from_a_worker_gone_before_it_parks_is_answered_at_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's own watch on its worker's leaving answers it (Starlette's
    `is_disconnected`, asked before parking, cost ~19 µs a round and is not asked)."""
    await _setup(db)

    async def not_asked(_: Request) -> bool:
        raise AssertionError("is_disconnected asked")

    monkeypatch.setattr(Request, "is_disconnected", not_asked)
    settings = Settings(database_url=str(db.url))
    worker = Worker()
    worker.request.scope["app"] = create_app(settings, db=db)
    worker.leave()
    body = ClaimBody(worker_id="w1", max_tasks=1, wait_seconds=30)
    async with asyncio.timeout(5):
        done, claimed = await workers._poll(
            "q", body, [], worker.request, db, settings, Principal("w", frozenset({"worker"}))
        )
    assert (done, claimed) == ([], [])
    assert handoffs(db).parked("q") == 0
