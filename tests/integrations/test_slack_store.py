"""The Slack integration's durable state on both backends: one replica relays a binding
(the lease), a replica that lost it cannot write (fencing), each event id is taken in once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
import sqlalchemy as sa
from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack.service import SlackService
from kernel.chat import Chat
from kernel.settings import Settings
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
    assert await _in_tx(db, slack_store.bind, task_id, ref) is True
    assert await _in_tx(db, slack_store.bind, task_id, ref) is False  # bound once

    a = await _in_tx(db, slack_store.lease, task_id, "replica-a", 30)
    assert a is not None and a.lease_owner == "replica-a"
    assert await _in_tx(db, slack_store.lease, task_id, "replica-b", 30) is None  # held by a
    assert await _in_read(db, slack_store.claimable, "replica-b") == []
    assert await _in_tx(db, slack_store.lease, task_id, "replica-a", 30) is not None  # a renews
    # b cannot write over a's record.
    assert await _in_tx(db, slack_store.save, task_id, "replica-b", last_seq=99) is False
    assert await _in_tx(db, slack_store.save, task_id, "replica-a", last_seq=3) is True

    # a's lease runs out (a paused, died): b takes over, and a's writes are refused from then on.
    assert await _in_tx(db, slack_store.lease, task_id, "replica-a", -1) is not None
    assert await _in_read(db, slack_store.claimable, "replica-b") == [task_id]
    b = await _in_tx(db, slack_store.lease, task_id, "replica-b", 30)
    assert b is not None and b.last_seq == 3
    assert await _in_tx(db, slack_store.save, task_id, "replica-a", last_seq=4) is False
    await _in_tx(db, slack_store.release, task_id, "replica-b")
    assert (await _in_read(db, slack_store.get_binding, task_id)).lease_owner is None  # type: ignore[union-attr]
    # Done bindings are nobody's business any more.
    assert await _in_tx(db, slack_store.lease, task_id, "replica-c", 30) is not None
    assert await _in_tx(db, slack_store.save, task_id, "replica-c", status="done", lease_owner=None) is True
    assert await _in_tx(db, slack_store.lease, task_id, "replica-c", 30) is None
    assert await _in_read(db, slack_store.claimable, "replica-c") == []


async def test_event_ids_are_taken_in_once(db: Database, slack_db: str) -> None:
    await _clean(db)
    assert await _in_tx(db, slack_store.first_sight, "Ev1") is True
    assert await _in_tx(db, slack_store.first_sight, "Ev1") is False
    assert await _in_tx(db, slack_store.first_sight, "Ev2") is True


async def test_thread_participants_grow_with_who_speaks(db: Database, slack_db: str) -> None:
    await _clean(db)
    ref = ThreadRef("T1", "C1", "2.0")
    row = await _in_tx(db, slack_store.touch_thread, ref, "U1")
    assert row.participants == ["U1"] and row.started_by == "U1"
    await _in_tx(db, slack_store.touch_thread, ref, "U2")
    await _in_tx(db, slack_store.touch_thread, ref, "U1")
    row = await _in_read(db, slack_store.get_thread, ref.key)
    assert row is not None and row.participants == ["U1", "U2"] and row.kind == "channel"


async def _in_tx(db: Database, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
    """One call of a store function in a transaction of its own."""
    async with db.tx() as tx:
        return await fn(tx, *args, **kw)


async def _in_read(db: Database, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    async with db.read() as s:
        return await fn(s, *args)


async def _clean(db: Any) -> None:
    async with db.tx() as tx:
        for table in ("slack_bindings", "slack_threads", "slack_events"):
            await tx.execute(sa.text(f"DELETE FROM {table}"))


async def test_a_retry_and_its_binding_commit_together(
    db: Database, slack_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the retry's task is created but before it is bound to the thread (here
    the bind fails) leaves no new task behind: nobody would ever relay it to the thread."""
    await _clean(db)
    task_id = await _task(db)
    ref = ThreadRef("T1", "C1", "3.0")
    async with db.tx() as tx:
        await task_service.cancel(tx, task_id, by="test")  # finished: it may be retried
        await slack_store.touch_thread(tx, ref, "U1")
        await slack_store.bind(tx, task_id, ref)
    service = SlackService(
        db,
        Settings(database_url=slack_db),
        AsyncWebClient(token="xoxb-test", base_url="http://127.0.0.1:9/"),  # never called
        "http://127.0.0.1:8080",
        cast(Chat, object()),  # no turn runs
    )

    async def crash(*args: Any, **kw: Any) -> bool:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(slack_store, "bind", crash)
    with pytest.raises(RuntimeError):
        await service.retry(task_id, "U1")
    async with db.read() as s:
        tasks = (await s.execute(sa.text("SELECT id FROM tasks"))).scalars().all()
        bindings = (await s.execute(sa.text("SELECT task_id FROM slack_bindings"))).scalars().all()
    assert list(tasks) == [task_id] and list(bindings) == [task_id]
