"""The Slack integration's durable state on both backends: one replica relays a binding
(the lease), a replica that lost it cannot write (fencing), each event id is taken in once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from store import catalog
from store import slack as slack_store
from store import tasks as task_service
from store.db import Database
from store.models import Agent, WorkerQueue
from store.slack import ThreadRef


async def _task(db: Database) -> str:
    async with db.tx() as tx:
        await catalog.create_queue(tx, WorkerQueue(name="q1"))
        await catalog.create_agent(tx, Agent(name="noop", runtime="noop", default_queue="q1"))
        task = await task_service.create_task(
            tx, task_service.NewTask(prompt="x", agent="noop", source="slack")
        )
    return task.id


async def test_lease_is_exclusive_fenced_and_released(db: Database, slack_db: str) -> None:
    await _clean(db)
    task_id = await _task(db)
    ref = ThreadRef("T1", "C1", "1.0")
    assert await slack_store.bind(db, task_id, ref) is True
    assert await slack_store.bind(db, task_id, ref) is False  # bound once

    a = await slack_store.lease(db, task_id, "replica-a", 30)
    assert a is not None and a.lease_owner == "replica-a"
    assert await slack_store.lease(db, task_id, "replica-b", 30) is None  # held by a
    assert await slack_store.claimable(db, "replica-b") == []
    assert await slack_store.lease(db, task_id, "replica-a", 30) is not None  # a renews
    # b cannot write over a's record.
    assert await slack_store.save(db, task_id, "replica-b", last_seq=99) is False
    assert await slack_store.save(db, task_id, "replica-a", last_seq=3) is True

    # a's lease runs out (a paused, died): b takes over, and a's writes are refused from then on.
    assert await slack_store.lease(db, task_id, "replica-a", -1) is not None
    assert await slack_store.claimable(db, "replica-b") == [task_id]
    b = await slack_store.lease(db, task_id, "replica-b", 30)
    assert b is not None and b.last_seq == 3
    assert await slack_store.save(db, task_id, "replica-a", last_seq=4) is False
    await slack_store.release(db, task_id, "replica-b")
    assert (await slack_store.get_binding(db, task_id)).lease_owner is None  # type: ignore[union-attr]
    # Done bindings are nobody's business any more.
    assert await slack_store.lease(db, task_id, "replica-c", 30) is not None
    assert await slack_store.save(db, task_id, "replica-c", status="done", lease_owner=None) is True
    assert await slack_store.lease(db, task_id, "replica-c", 30) is None
    assert await slack_store.claimable(db, "replica-c") == []


async def test_event_ids_are_taken_in_once(db: Database, slack_db: str) -> None:
    await _clean(db)
    assert await slack_store.first_sight(db, "Ev1") is True
    assert await slack_store.first_sight(db, "Ev1") is False
    assert await slack_store.first_sight(db, "Ev2") is True


async def test_thread_participants_grow_with_who_speaks(db: Database, slack_db: str) -> None:
    await _clean(db)
    ref = ThreadRef("T1", "C1", "2.0")
    row = await slack_store.touch_thread(db, ref, "U1")
    assert row.participants == ["U1"] and row.started_by == "U1"
    await slack_store.touch_thread(db, ref, "U2")
    await slack_store.touch_thread(db, ref, "U1")
    row = await slack_store.get_thread(db, ref.key)
    assert row is not None and row.participants == ["U1", "U2"] and row.kind == "channel"


async def _clean(db: Any) -> None:
    async with db.tx() as tx:
        for table in ("slack_bindings", "slack_threads", "slack_events"):
            await tx.execute(sa.text(f"DELETE FROM {table}"))
