"""Durable state of the Slack integration: threads, task bindings (with the relay's lease)
and seen event ids; and the reads of core tables (tasks, their events) the integration needs.

Every function works in the caller's unit of work: writes take the `Tx` of a `db.tx()`,
reads the session of a `db.read()` (or a tx's session), so one Slack action (a retry: the
new task and its binding) commits or fails as a whole.

The relay's writes are fenced by its lease: `save` only changes a binding the caller still
holds, so a replica that lost the lease (paused, partitioned) cannot move `last_seq` or
record a post over the replica that took over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from store.db import Tx
from store.models import TERMINAL, Task, TaskEvent, TaskStatus, utcnow
from store.slack_models import SlackBinding, SlackEventSeen, SlackThread

# The tables by name from the metadata (typed `Table`; SQLModel leaves `__table__` untyped).
_bindings = SlackBinding.metadata.tables["slack_bindings"]
_events = SlackEventSeen.metadata.tables["slack_events"]

# Hub topic: a binding was made that no relay follows yet (the relays sweep at once).
BINDINGS = "slack_bindings"


@dataclass(frozen=True)
class ThreadRef:
    """Where a conversation lives in Slack."""

    team_id: str
    channel: str
    thread_ts: str
    kind: str = "channel"  # channel | im | assistant

    @property
    def key(self) -> str:
        return f"slack:{self.team_id}:{self.channel}:{self.thread_ts}"


def _insert(tx: Tx, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
    return (sqlite.insert if tx.db.is_sqlite else postgresql.insert)(table)


# --- event ids --------------------------------------------------------------------------------


async def first_sight(tx: Tx, event_id: str) -> bool:
    """Record a Slack event id; False when it was already recorded (a retried delivery)."""
    stmt = _insert(tx, _events).values(event_id=event_id[:64], created_at=utcnow())
    # RETURNING, not rowcount: psycopg reports -1 rows for a conflicting INSERT here.
    returning = stmt.on_conflict_do_nothing(index_elements=["event_id"]).returning(_events.c.event_id)
    return (await tx.execute(returning)).first() is not None


async def forget_events(tx: Tx, older_than: timedelta = timedelta(days=1)) -> None:
    """Slack retries for about an hour; a day of ids is plenty."""
    await tx.execute(sa.delete(SlackEventSeen).where(col(SlackEventSeen.created_at) < utcnow() - older_than))


# --- threads ----------------------------------------------------------------------------------


async def get_thread(session: AsyncSession, key: str) -> SlackThread | None:
    return await session.get(SlackThread, key)


async def touch_thread(tx: Tx, ref: ThreadRef, speaker: str | None) -> SlackThread:
    """The thread's row, created on first use; `speaker` (someone addressing the bot in it)
    joins its participants, the people who may answer its questions."""
    row = await tx.session.get(SlackThread, ref.key)
    if row is None:
        row = SlackThread(
            key=ref.key,
            team_id=ref.team_id,
            channel=ref.channel,
            thread_ts=ref.thread_ts,
            kind=ref.kind,
            started_by=speaker,
            participants=[speaker] if speaker else [],
        )
        tx.session.add(row)
    else:
        if speaker and speaker not in row.participants:
            row.participants = [*row.participants, speaker]  # replaced, not mutated
        if ref.kind == "assistant" and row.kind != "assistant":
            row.kind = "assistant"
    await tx.session.flush()
    return row


async def thread_of_task(session: AsyncSession, task_id: str) -> SlackThread | None:
    binding = await session.get(SlackBinding, task_id)
    return None if binding is None else await session.get(SlackThread, binding.thread_key)


# --- bindings ---------------------------------------------------------------------------------


async def bind(tx: Tx, task_id: str, ref: ThreadRef, conversation_id: str | None = None) -> bool:
    """Bind a task to a thread (once; a second bind of the same task changes nothing)."""
    now = utcnow()
    stmt = _insert(tx, _bindings).values(
        task_id=task_id,
        thread_key=ref.key,
        team_id=ref.team_id,
        channel=ref.channel,
        thread_ts=ref.thread_ts,
        conversation_id=conversation_id,
        last_seq=0,
        posts={},
        status="active",
        created_at=now,
        updated_at=now,
    )
    returning = stmt.on_conflict_do_nothing(index_elements=["task_id"]).returning(_bindings.c.task_id)
    return (await tx.execute(returning)).first() is not None


async def bind_channel(tx: Tx, task_id: str, channel: str, *, schedule: str) -> bool:
    """Bind a scheduled run to a channel where its thread does not exist yet: the relay posts
    the root message ("Scheduled run of <schedule> started") first and threads under it
    (`rooted`). `channel` is an id (C0123ABC) or a name (#ops); a name is kept in
    `posts["notify"]` until the root post tells its id. Made in the transaction that creates
    the task, so a crash cannot start the run without it."""
    now = utcnow()
    is_id = not channel.startswith("#")
    stmt = _insert(tx, _bindings).values(
        task_id=task_id,
        thread_key="",  # set with thread_ts once the root message is posted
        team_id="",
        channel=channel if is_id else "",
        thread_ts="",
        conversation_id=None,
        last_seq=0,
        posts={"notify": {"to": channel, "schedule": schedule}},
        status="active",
        created_at=now,
        updated_at=now,
    )
    returning = stmt.on_conflict_do_nothing(index_elements=["task_id"]).returning(_bindings.c.task_id)
    bound = (await tx.execute(returning)).first() is not None
    if bound:
        tx.notify(BINDINGS, task_id)
    return bound


async def rooted(tx: Tx, task_id: str, owner: str, ref: ThreadRef, posts: dict[str, Any]) -> bool:
    """The root message of a channel binding is posted: the binding now names its thread, and
    the thread is one of ours (a reply in it can answer the run's questions). Fenced by the
    lease like `save`; False when the lease is gone."""
    stmt = (
        sa.update(_bindings)
        .where(_bindings.c.task_id == task_id, _bindings.c.lease_owner == owner)
        .values(
            thread_key=ref.key,
            team_id=ref.team_id,
            channel=ref.channel,
            thread_ts=ref.thread_ts,
            posts=posts,
            updated_at=utcnow(),
        )
    )
    if not await _changed(tx, stmt):
        return False
    await touch_thread(tx, ref, None)
    return True


async def bindings_of(session: AsyncSession, task_ids: list[str]) -> dict[str, SlackBinding]:
    """The bindings of these tasks, by task id (one query for a page of schedules)."""
    if not task_ids:
        return {}
    rows = await session.execute(select(SlackBinding).where(col(SlackBinding.task_id).in_(task_ids)))
    return {b.task_id: b for b in rows.scalars().all()}


async def set_conversation(tx: Tx, task_ids: list[str], conversation_id: str) -> None:
    if not task_ids:
        return
    await tx.execute(
        sa.update(_bindings)
        .where(_bindings.c.task_id.in_(task_ids), _bindings.c.conversation_id.is_(None))
        .values(conversation_id=conversation_id)
    )


async def get_binding(session: AsyncSession, task_id: str) -> SlackBinding | None:
    return await session.get(SlackBinding, task_id)


async def claimable(session: AsyncSession, owner: str) -> list[str]:
    """Active bindings nobody (else) holds: never leased, released, or whose lease ran out."""
    now = utcnow()
    rows = await session.execute(
        select(SlackBinding.task_id).where(
            SlackBinding.status == "active",
            sa.or_(
                col(SlackBinding.lease_until).is_(None),
                col(SlackBinding.lease_until) < now,
                col(SlackBinding.lease_owner) == owner,
            ),
        )
    )
    return list(rows.scalars().all())


async def lease(tx: Tx, task_id: str, owner: str, seconds: float) -> SlackBinding | None:
    """Take or extend the lease on one active binding: one conditional UPDATE, so two
    replicas racing for it cannot both win."""
    now = utcnow()
    stmt = (
        sa.update(_bindings)
        .where(
            _bindings.c.task_id == task_id,
            _bindings.c.status == "active",
            sa.or_(
                _bindings.c.lease_owner.is_(None),
                _bindings.c.lease_owner == owner,
                _bindings.c.lease_until < now,
            ),
        )
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
    )
    if not await _changed(tx, stmt):
        return None
    return await tx.session.get(SlackBinding, task_id, populate_existing=True)


async def save(tx: Tx, task_id: str, owner: str, **values: Any) -> bool:
    """Update a binding the caller still holds; False when the lease is gone."""
    stmt = (
        sa.update(_bindings)
        .where(_bindings.c.task_id == task_id, _bindings.c.lease_owner == owner)
        .values(updated_at=utcnow(), **values)
    )
    return await _changed(tx, stmt)


async def release(tx: Tx, task_id: str, owner: str) -> None:
    """Give a binding back (clean shutdown), so the next replica or start takes it at once."""
    await tx.execute(
        sa.update(_bindings)
        .where(_bindings.c.task_id == task_id, _bindings.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


async def _changed(tx: Tx, stmt: sa.Update) -> bool:
    """Whether the UPDATE matched a row (told by RETURNING: a plain `Result` has no typed
    rowcount, and RETURNING answers the same on both backends)."""
    return (await tx.execute(stmt.returning(_bindings.c.task_id))).first() is not None


# --- the core tables, as Slack reads them -----------------------------------------------------


async def waiting_in_thread(session: AsyncSession, key: str) -> Task | None:
    """The task bound to this thread that waits for an answer (the most recent one)."""
    rows = await session.execute(
        select(Task)
        .join(SlackBinding, col(SlackBinding.task_id) == col(Task.id))
        .where(SlackBinding.thread_key == key, Task.status == TaskStatus.requires_input.value)
        .order_by(col(Task.updated_at).desc())
        .limit(1)
    )
    return rows.scalars().first()


async def question_seq(session: AsyncSession, task_id: str) -> int | None:
    """The seq of the task's latest question (its `input_requested` event), if it asked one."""
    row = await session.execute(
        select(sa.func.max(TaskEvent.seq)).where(
            TaskEvent.task_id == task_id, TaskEvent.kind == "input_requested"
        )
    )
    return row.scalar()


async def find_task(session: AsyncSession, task_id: str) -> Task | None:
    return await session.get(Task, task_id)


async def unfinished_tasks(session: AsyncSession, limit: int = 20) -> list[Task]:
    """The newest tasks still pending, running or waiting for input (`/meta-agent tasks`)."""
    rows = await session.execute(
        select(Task)
        .where(col(Task.status).in_(["running", "requires_input", "pending"]))
        .order_by(col(Task.id).desc())
        .limit(limit)
    )
    return list(rows.scalars().all())


def is_terminal(status: str) -> bool:
    return status in TERMINAL
