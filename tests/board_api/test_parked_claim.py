"""A worker's parked claim (board_api/routes/workers.py `_parked`) and the creations that
may hand it a task (store/handoff.py), on the event loop they share."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

from board_api.routes import workers
from sdk.schemas import ClaimBody
from store import audit, catalog, tasks
from store.db import Database, Tx
from store.handoff import create_handing_off, handoffs
from store.models import Agent, Task, WorkerQueue

ACTOR = audit.Actor("tester", "person")


class CheckingWorker(Request):
    """The worker's request: asked whether the worker left, it answers once told to (the
    real check also gives the event loop to others: here the test decides what runs then)."""

    def __init__(self) -> None:
        super().__init__({"type": "http", "method": "POST", "path": "/", "headers": []})
        self.checking = asyncio.Event()
        self.answer = asyncio.Event()

    async def is_disconnected(self) -> bool:
        self.checking.set()
        await self.answer.wait()
        return False


async def _create(tx: Tx) -> Task:
    task = await tasks.create_task(tx, tasks.NewTask(prompt="p", agent="a"))
    await audit.record(tx, ACTOR, "task.create", "task", task.id, {"agent": "a"})
    return task


async def _until(check: Any) -> None:
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_claim_woken_by_its_queue_is_handed_nothing_while_it_checks_its_worker(db: Database) -> None:
    """Woken by its queue (another replica's task, say), the claim checks that its worker
    is still there before claiming on its own: a creation meanwhile must not claim for it,
    or that task, answered to nobody, would wait for its lease to expire and run again."""
    async with db.tx() as tx:
        await catalog.create_queue(tx, WorkerQueue(name="q"))
        await catalog.create_agent(tx, Agent(name="a", runtime="noop", default_queue="q"))
    worker = CheckingWorker()
    body = ClaimBody(worker_id="w1", max_tasks=1, wait_seconds=5)
    version = db.hub.version("queue:q")
    claim = asyncio.create_task(workers._parked("q", body, worker, db, 60, None, "queue:q", version, 5))
    await _until(lambda: handoffs(db).parked("q"))
    db.hub.publish("queue:q")
    async with asyncio.timeout(10):
        await worker.checking.wait()
    task = await create_handing_off(db, _create)
    worker.answer.set()
    async with asyncio.timeout(10):
        assert await claim == []  # nothing handed: it claims on its own next
    async with db.read() as s:
        stored = await tasks.get_task(s, task.id)
    assert (stored.status, stored.worker_id) == ("pending", None)
