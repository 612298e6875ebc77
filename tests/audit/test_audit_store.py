"""store/audit.py and store/retention.py on SQLite and PostgreSQL: a record commits with its
action or not at all; filters and paging; the pruner deletes old finished tasks in batches,
with their events and artifacts, records each batch, and never touches an unfinished task."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from kernel import errors
from kernel.redact import MASK
from store import audit, retention, tasks, work
from store.audit_models import AuditEntry
from store.db import Database
from store.leases import Lease
from store.models import Artifact, ArtifactChunk, Task, TaskEvent, utcnow
from tests.audit.helpers import finished_days_ago, new_task, seed_catalog

ALICE = audit.Actor("alice", "key", "cli")


async def _entries(db: Database, **kw: object) -> list[AuditEntry]:
    async with db.read() as s:
        items, _ = await audit.list_entries(s, audit.AuditFilter(**kw), limit=200)  # type: ignore[arg-type]
    return items


async def test_a_record_commits_with_its_action_or_not_at_all(db: Database) -> None:
    await seed_catalog(db)
    with pytest.raises(errors.NotFound):
        async with db.tx() as tx:
            task = await tasks.create_task(tx, tasks.NewTask(agent="echo", prompt="x"))
            await audit.record(tx, ALICE, "task.create", "task", task.id)
            await tasks.cancel(tx, "no-such-task")  # the action fails after the record
    assert await _entries(db) == []
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Task))).scalar_one() == 0

    async with db.tx() as tx:
        task = await tasks.create_task(tx, tasks.NewTask(agent="echo", prompt="x"))
        await audit.record(
            tx, ALICE, "task.create", "task", task.id, {"api_key": "sk-live-1234567890", "note": "n" * 900}
        )
    (entry,) = await _entries(db)
    assert (entry.actor, entry.actor_kind, entry.source, entry.action) == (
        "alice",
        "key",
        "cli",
        "task.create",
    )
    assert (entry.target_kind, entry.target_id) == ("task", task.id)
    assert entry.details["api_key"] == MASK  # a credential never lands in the log
    assert len(entry.details["note"]) == audit.MAX_DETAIL_CHARS + 1  # shortened, with "…"
    assert entry.at.tzinfo is not None


async def test_filters_and_cursor_paging(db: Database) -> None:
    bob = audit.Actor("bob", "slack", "slack")
    async with db.tx() as tx:
        for i in range(5):
            await audit.record(tx, ALICE, "task.cancel", "task", f"t{i}")
        await audit.record(tx, bob, "key.revoke", "key", "k1")
        await audit.record(tx, bob, "task.answer", "task", "t1")

    assert {e.action for e in await _entries(db, actor="bob")} == {"key.revoke", "task.answer"}
    assert len(await _entries(db, action="task.*")) == 6
    assert [e.actor for e in await _entries(db, action="key.revoke")] == ["bob"]
    assert len(await _entries(db, target_kind="task", target_id="t1")) == 2
    assert len(await _entries(db, since=utcnow() - timedelta(minutes=1))) == 7
    assert await _entries(db, until=utcnow() - timedelta(minutes=1)) == []
    assert await _entries(db, since=utcnow() + timedelta(minutes=1)) == []

    seen: list[str] = []
    cursor = None
    async with db.read() as s:
        while True:
            page, cursor = await audit.list_entries(s, audit.AuditFilter(), limit=3, cursor=cursor)
            seen += [e.id for e in page]
            if cursor is None:
                break
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)  # newest first, each once

    everything = [e.id async for e in audit.iter_entries(db, audit.AuditFilter(), batch=2)]
    assert everything == sorted(seen)  # the export: oldest first, in batches
    async with db.read() as s:
        with pytest.raises(errors.Invalid):
            await audit.list_entries(s, audit.AuditFilter(), limit=201)
        now = utcnow()
        with pytest.raises(errors.Invalid):
            await audit.list_entries(s, audit.AuditFilter(since=now, until=now - timedelta(days=1)))


async def test_prune_deletes_old_finished_tasks_in_batches_and_spares_unfinished(
    db: Database, db_url: str
) -> None:
    await seed_catalog(db)
    old_done = [(await new_task(db, f"old {i}", cancel=True)).id for i in range(5)]
    recent_done = (await new_task(db, "recent", cancel=True)).id
    running, asking = (await new_task(db, "running")).id, (await new_task(db, "asking")).id
    async with db.tx() as tx:
        claimed = {c.task.id: c.token for c in await work.claim_tasks(tx, "q1", "w1", 10, 60)}
    async with db.tx() as tx:
        await work.request_input(tx, asking, Lease(claimed[asking]), question="which one?")
    old_pending = (await new_task(db, "still waiting")).id  # after the claim: it stays pending
    finished_days_ago(db_url, old_done, 40)
    finished_days_ago(db_url, [recent_done], 5)
    # Unfinished tasks with an old finished_at (never the case, but the rule is the status).
    unfinished = [old_pending, running, asking]
    finished_days_ago(db_url, unfinished, 40)
    art_id = "a-" + old_done[0][:30]
    async with db.tx() as tx:
        await tx.execute(sa.insert(ArtifactChunk).values(artifact_id=art_id, idx=0, data=b"xx"))
        await tx.execute(
            sa.insert(Artifact).values(id=art_id, task_id=old_done[0], name="r.txt", size=2, sha256="")
        )

    assert await retention.prune(db, 30, batch=2) == 5

    async with db.read() as s:
        left = set((await s.execute(sa.select(Task.id))).scalars().all())
        events_left = set((await s.execute(sa.select(TaskEvent.task_id))).scalars().all())
        chunks = (await s.execute(sa.select(sa.func.count()).select_from(ArtifactChunk))).scalar_one()
        arts = (await s.execute(sa.select(sa.func.count()).select_from(Artifact))).scalar_one()
    assert left == {recent_done, *unfinished}
    async with db.read() as s:
        statuses = {t: (await tasks.get_task(s, t)).status for t in unfinished}
    assert statuses == {old_pending: "pending", running: "running", asking: "requires_input"}
    assert events_left <= left and set(unfinished) <= events_left
    assert (chunks, arts) == (0, 0)
    batches = await _entries(db, action="retention.prune")
    assert sorted(e.details["tasks"] for e in batches) == [1, 2, 2]  # bounded batches, each recorded
    assert sum(e.details["events"] for e in batches) == 10  # created + cancelled, per task
    assert sum(e.details["artifacts"] for e in batches) == 1
    assert {(e.actor, e.actor_kind) for e in batches} == {("control-plane", "system")}

    assert await retention.prune(db, 30) == 0  # nothing left to do, nothing recorded
    assert len(await _entries(db, action="retention.prune")) == 3
    assert await retention.prune(db, 0) == 0  # 0 keeps forever
    assert await retention.prune(db, 1) == 1  # the 5-day-old one goes with a shorter retention
