"""Durable state of the Slack integration: threads, task bindings (with the relay's lease)
and seen event ids. Every function runs its own short transaction.

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
from sqlmodel import col, select

from store.db import Database
from store.models import TERMINAL, Task, TaskStatus, utcnow
from store.slack_models import SlackBinding, SlackEventSeen, SlackThread

_bindings = SlackBinding.__table__  # type: ignore[attr-defined]


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


def _insert(db: Database, table: Any) -> Any:
    return (sqlite.insert if db.is_sqlite else postgresql.insert)(table)


async def first_sight(db: Database, event_id: str) -> bool:
    """Record a Slack event id; False when it was already recorded (a retried delivery)."""
    stmt = _insert(db, SlackEventSeen.__table__).values(event_id=event_id[:64], created_at=utcnow())  # type: ignore[attr-defined]
    # RETURNING, not rowcount: psycopg reports -1 rows for a conflicting INSERT here.
    stmt = stmt.on_conflict_do_nothing(index_elements=["event_id"]).returning(sa.literal_column("event_id"))
    async with db.tx() as tx:
        return (await tx.execute(stmt)).first() is not None


async def forget_events(db: Database, older_than: timedelta = timedelta(days=1)) -> None:
    """Slack retries for about an hour; a day of ids is plenty."""
    async with db.tx() as tx:
        await tx.execute(
            sa.delete(SlackEventSeen).where(col(SlackEventSeen.created_at) < utcnow() - older_than)
        )


async def get_thread(db: Database, key: str) -> SlackThread | None:
    async with db.read() as s:
        return await s.get(SlackThread, key)


async def touch_thread(db: Database, ref: ThreadRef, speaker: str | None) -> SlackThread:
    """The thread's row, created on first use; `speaker` (someone addressing the bot in it)
    joins its participants, the people who may answer its questions."""
    async with db.tx() as tx:
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


async def bind(db: Database, task_id: str, ref: ThreadRef, conversation_id: str | None = None) -> bool:
    """Bind a task to a thread (once; a second bind of the same task changes nothing)."""
    now = utcnow()
    stmt = _insert(db, _bindings).values(
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
    stmt = stmt.on_conflict_do_nothing(index_elements=["task_id"]).returning(_bindings.c.task_id)
    async with db.tx() as tx:
        return (await tx.execute(stmt)).first() is not None


async def set_conversation(db: Database, task_ids: list[str], conversation_id: str) -> None:
    if not task_ids:
        return
    async with db.tx() as tx:
        await tx.execute(
            sa.update(_bindings)
            .where(_bindings.c.task_id.in_(task_ids), _bindings.c.conversation_id.is_(None))
            .values(conversation_id=conversation_id)
        )


async def get_binding(db: Database, task_id: str) -> SlackBinding | None:
    async with db.read() as s:
        return await s.get(SlackBinding, task_id)


async def claimable(db: Database, owner: str) -> list[str]:
    """Active bindings nobody (else) holds: never leased, released, or whose lease ran out."""
    now = utcnow()
    async with db.read() as s:
        rows = await s.execute(
            select(SlackBinding.task_id).where(
                SlackBinding.status == "active",
                sa.or_(
                    col(SlackBinding.lease_until).is_(None),
                    col(SlackBinding.lease_until) < now,
                    SlackBinding.lease_owner == owner,
                ),
            )
        )
        return list(rows.scalars().all())


async def lease(db: Database, task_id: str, owner: str, seconds: float) -> SlackBinding | None:
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
    async with db.tx() as tx:
        if not (await tx.execute(stmt)).rowcount:
            return None
        row = await tx.session.get(SlackBinding, task_id)
        return row


async def save(db: Database, task_id: str, owner: str, **values: Any) -> bool:
    """Update a binding the caller still holds; False when the lease is gone."""
    stmt = (
        sa.update(_bindings)
        .where(_bindings.c.task_id == task_id, _bindings.c.lease_owner == owner)
        .values(updated_at=utcnow(), **values)
    )
    async with db.tx() as tx:
        return bool((await tx.execute(stmt)).rowcount)


async def release(db: Database, task_id: str, owner: str) -> None:
    """Give a binding back (clean shutdown), so the next replica or start takes it at once."""
    async with db.tx() as tx:
        await tx.execute(
            sa.update(_bindings)
            .where(_bindings.c.task_id == task_id, _bindings.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


async def waiting_in_thread(db: Database, key: str) -> Task | None:
    """The task bound to this thread that waits for an answer (the most recent one)."""
    async with db.read() as s:
        rows = await s.execute(
            select(Task)
            .join(SlackBinding, col(SlackBinding.task_id) == col(Task.id))
            .where(SlackBinding.thread_key == key, Task.status == TaskStatus.requires_input.value)
            .order_by(col(Task.updated_at).desc())
            .limit(1)
        )
        return rows.scalars().first()


async def thread_of_task(db: Database, task_id: str) -> SlackThread | None:
    async with db.read() as s:
        binding = await s.get(SlackBinding, task_id)
        return None if binding is None else await s.get(SlackThread, binding.thread_key)


def is_terminal(status: str) -> bool:
    return status in TERMINAL
