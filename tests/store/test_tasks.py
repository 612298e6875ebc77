"""The store on real SQLite and PostgreSQL: state machine, claims, event log, reaper."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa

from kernel import errors
from store import tasks
from store.catalog import create_agent, create_queue, touch_worker
from store.db import Database
from store.events import list_after
from store.leases import Lease
from store.models import Agent, TaskEvent, TaskStatus, WorkerQueue, utcnow
from store.statemachine import ALLOWED, transition


async def seed(db: Database, queue: str = "q1") -> None:
    async with db.tx() as tx:
        await create_queue(tx, WorkerQueue(name=queue))
        await create_agent(tx, Agent(name="echo", runtime="noop", default_queue=queue))


async def new_task(db: Database, prompt: str = "hi") -> str:
    async with db.tx() as tx:
        return (await tasks.create_task(tx, tasks.NewTask(prompt=prompt, agent="echo"))).id


async def statuses(db: Database, task_id: str) -> list[str]:
    async with db.read() as s:
        return [e.data["status"] for e in await list_after(s, task_id) if e.kind == "status"]


async def test_create_appends_first_status_event(db: Database) -> None:
    await seed(db)
    tid = await new_task(db)
    async with db.read() as s:
        task = await tasks.get_task(s, tid)
        events = await list_after(s, tid)
    assert task.status == "pending" and task.queue == "q1" and task.last_seq == 1
    assert [(e.seq, e.kind, e.data["status"]) for e in events] == [(1, "status", "pending")]


async def test_full_lifecycle_and_seq_without_gaps(db: Database) -> None:
    await seed(db)
    tid = await new_task(db)
    async with db.tx() as tx:
        (claimed,) = await tasks.claim_tasks(tx, "q1", "w1", 5, 30)
    token = Lease(claimed.token)
    assert claimed.task.attempt == 1 and claimed.agent is not None and claimed.agent.name == "echo"
    async with db.tx() as tx:
        last, cancel = await tasks.worker_events(
            tx, tid, token, [("log", {"line": "a"}), ("log", {"line": "b"})]
        )
    assert (last, cancel) == (4, False)
    async with db.tx() as tx:
        await tasks.request_input(tx, tid, token, question="Which env?", choices=["dev", "prod"], key="env")
    async with db.tx() as tx:
        task = await tasks.respond(tx, tid, "dev", by="alice")
    assert task.status == "pending" and task.inputs == {"env": "dev"} and task.pending_input is None
    async with db.tx() as tx:
        (again,) = await tasks.claim_tasks(tx, "q1", "w2", 1, 30)
    assert again.task.attempt == 2 and again.task.inputs == {"env": "dev"}
    async with db.tx() as tx:
        done = await tasks.complete(
            tx, tid, Lease(again.token), result={"ok": True}, events=[("message", {"text": "done"})]
        )
    assert done.status == "completed" and done.result == {"ok": True} and done.finished_at is not None
    async with db.read() as s:
        events = await list_after(s, tid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert await statuses(db, tid) == [
        "pending",
        "running",
        "requires_input",
        "pending",
        "running",
        "completed",
    ]
    kinds = [e.kind for e in events]
    assert "input_requested" in kinds and "input_received" in kinds
    assert kinds[-2:] == ["message", "status"]


async def test_stale_token_is_refused_and_changes_nothing(db: Database) -> None:
    await seed(db)
    tid = await new_task(db)
    async with db.tx() as tx:
        await tasks.claim_tasks(tx, "q1", "w1", 1, 30)
    # The old fencing token was the attempt number; "1" is what a guesser would try.
    stale = Lease("1")
    for call in (
        lambda tx: tasks.complete(tx, tid, stale, result=None),
        lambda tx: tasks.worker_events(tx, tid, stale, [("log", {})]),
        lambda tx: tasks.fail(tx, tid, stale, code="x", message="y"),
        lambda tx: tasks.heartbeat(tx, tid, stale, 30),
        lambda tx: tasks.save_checkpoint(tx, tid, stale, {"messages": []}),
        lambda tx: tasks.release(tx, tid, stale),
    ):
        with pytest.raises(errors.StaleLease):
            async with db.tx() as tx:
                await call(tx)
    async with db.read() as s:
        task = await tasks.get_task(s, tid)
    assert task.status == "running" and task.last_seq == 2


@pytest.mark.parametrize(
    ("start", "to"),
    [(s, t) for s in TaskStatus for t in TaskStatus if t not in ALLOWED[s] and s != t],
)
async def test_forbidden_transitions_raise(db: Database, start: TaskStatus, to: TaskStatus) -> None:
    await seed(db)
    tid = await new_task(db)
    async with db.tx() as tx:  # put the task in `start` directly, as a fixture would
        await tx.execute(sa.text("UPDATE tasks SET status = :s WHERE id = :i"), {"s": start.value, "i": tid})
    with pytest.raises(errors.InvalidTransition):
        async with db.tx() as tx:
            await transition(tx, tid, to)
    async with db.read() as s:
        task = await tasks.get_task(s, tid)
    assert task.status == start.value and task.last_seq == 1


async def test_cancel_pending_at_once_and_running_by_request(db: Database) -> None:
    await seed(db)
    a, b = await new_task(db), await new_task(db)
    async with db.tx() as tx:
        assert (await tasks.cancel(tx, a)).status == "cancelled"
    async with db.tx() as tx:
        (claimed,) = await tasks.claim_tasks(tx, "q1", "w1", 1, 30)
    async with db.tx() as tx:
        t = await tasks.cancel(tx, b)
    assert t.status == "running" and t.cancel_requested
    async with db.tx() as tx:
        cancel, lost = await tasks.worker_heartbeat(tx, "w1", "q1", 1, [(b, claimed.token)], 30)
    assert cancel == [b] and lost == []
    async with db.tx() as tx:
        t = await tasks.fail(tx, b, Lease(claimed.token), code="cancelled", message="stopped")
    assert t.status == "cancelled"
    with pytest.raises(errors.InvalidTransition):
        async with db.tx() as tx:
            await tasks.cancel(tx, b)


async def test_retry_links_new_task(db: Database) -> None:
    await seed(db)
    tid = await new_task(db, "again")
    with pytest.raises(errors.InvalidTransition):
        async with db.tx() as tx:
            await tasks.retry(tx, tid)
    async with db.tx() as tx:
        await tasks.cancel(tx, tid)
    async with db.tx() as tx:
        new = await tasks.retry(tx, tid)
    assert new.retry_of == tid and new.prompt == "again" and new.status == "pending" and new.id != tid


async def test_reaper_requeues_then_fails_worker_lost(db: Database) -> None:
    await seed(db)
    tid = await new_task(db)
    async with db.tx() as tx:
        await tx.execute(sa.text("UPDATE tasks SET max_attempts = 2 WHERE id = :i"), {"i": tid})
    for attempt, expected in ((1, "pending"), (2, "failed")):
        async with db.tx() as tx:
            (c,) = await tasks.claim_tasks(tx, "q1", "w1", 1, 30)
        assert c.task.attempt == attempt
        async with db.read() as s:
            assert not await tasks.has_expired_leases(s)
            assert await tasks.has_expired_leases(s, now=utcnow() + timedelta(seconds=31))
        async with db.tx() as tx:
            reaped = await tasks.reap_expired(tx, now=utcnow() + timedelta(seconds=31))
        assert [(t.id, t.status) for t in reaped] == [(tid, expected)]
    async with db.read() as s:
        task = await tasks.get_task(s, tid)
    assert task.error_code == "worker_lost" and task.lost_leases == 2
    assert await statuses(db, tid) == ["pending", "running", "pending", "running", "failed"]


async def test_unknown_agent_queue_and_oversized_prompt_are_refused(db: Database) -> None:
    await seed(db)
    cases = [
        (tasks.NewTask(prompt="x", agent="nope"), "agent_not_found"),
        (tasks.NewTask(prompt="x", agent="echo", queue="nope"), "queue_not_found"),
        (tasks.NewTask(prompt="x" * 101, agent="echo"), "prompt_too_long"),
        (tasks.NewTask(prompt="x"), "agent_or_team_required"),
    ]
    for new, code in cases:
        with pytest.raises(errors.MetaAgentError) as info:
            async with db.tx() as tx:
                await tasks.create_task(tx, new, max_prompt_chars=100)
        assert info.value.code == code
    async with db.read() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(TaskEvent)) == 0


async def test_the_queue_rule_for_an_owner_without_a_default_queue(db: Database) -> None:
    async def queue_of() -> str:
        async with db.tx() as tx:
            return (await tasks.create_task(tx, tasks.NewTask(prompt="x", agent="roamer"))).queue

    async def refused() -> str:
        with pytest.raises(errors.MetaAgentError) as info:
            await queue_of()
        assert info.value.code == "queue_required"
        return str(info.value)

    async with db.tx() as tx:
        await create_queue(tx, WorkerQueue(name="q1"))
        await create_agent(tx, Agent(name="roamer", runtime="noop"))
    assert await queue_of() == "q1"  # the only queue: the task waits there
    async with db.tx() as tx:
        await create_queue(tx, WorkerQueue(name="q2"))
        await create_queue(tx, WorkerQueue(name="q3"))
    assert "No worker is live on any queue" in await refused()
    async with db.tx() as tx:
        await touch_worker(tx, "w2", "q2")
    assert await queue_of() == "q2"  # the one queue with a live worker
    async with db.tx() as tx:
        await touch_worker(tx, "w3", "q3")
    assert "several queues have live workers (q2, q3)" in await refused()


async def test_concurrent_claimers_get_each_task_exactly_once(db_url: str) -> None:
    """8 claimers, each with its own engine (as separate replicas would), race over 500 tasks."""
    setup = Database(db_url)
    await seed(setup)
    async with setup.tx() as tx:
        for i in range(500):
            await tasks.create_task(tx, tasks.NewTask(prompt=f"t{i}", agent="echo"))
    await setup.dispose()

    dbs = [Database(db_url, pool_size=2) for _ in range(8)] if not setup.is_sqlite else [Database(db_url)] * 8
    got: dict[str, list[str]] = {}

    async def claimer(i: int) -> None:
        mine = got.setdefault(f"w{i}", [])
        while True:
            async with dbs[i].tx() as tx:
                claimed = await tasks.claim_tasks(tx, "q1", f"w{i}", 7, 30)
            if not claimed:
                return
            for c in claimed:
                async with dbs[i].tx() as tx:
                    await tasks.complete(tx, c.task.id, Lease(c.token), result=i)
                mine.append(c.task.id)

    await asyncio.wait_for(asyncio.gather(*(claimer(i) for i in range(8))), 120)
    all_ids = [t for ids in got.values() for t in ids]
    assert len(all_ids) == 500 and len(set(all_ids)) == 500
    check = dbs[0]
    async with check.read() as s:
        counts = await tasks.count_by_status(s)
        attempts = (await s.execute(sa.text("SELECT max(attempt), min(attempt) FROM tasks"))).one()
    assert counts["completed"] == 500 and attempts == (1, 1)
    assert sum(1 for ids in got.values() if ids) >= 2, "claims should spread over claimers"
    for d in set(dbs):
        await d.dispose()
