"""The append-only task event log: per-task `seq` 1, 2, 3 ... without gaps.

`seq` comes from `tasks.last_seq`, bumped by the same UPDATE that fences the writer, in
the same transaction as the insert; the row lock on the task (PostgreSQL) or the single
writer (SQLite) makes concurrent appends to one task queue up instead of colliding.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from kernel import errors
from kernel.redact import redact_data
from store import fastpath
from store.db import Tx
from store.hub import Batch
from store.leases import Lease, refusal
from store.models import Task, TaskEvent, TaskStatus, utcnow

__all__ = ["EVENT_KINDS", "append", "list_after", "masked", "rows_after"]

EVENT_KINDS = frozenset(
    {
        "status",
        "message_delta",
        "message_reset",
        "message",
        "tool_started",
        "tool_output",
        "tool_completed",
        "log",
        "input_requested",
        "input_received",
        "artifact",
        "plan",
        "checkpoint",
        "usage",
    }
)
# Only the state machine writes these; a worker posting one is refused.
RESERVED_KINDS = frozenset({"status", "input_requested", "input_received"})

_tasks = Task.__table__
_events = TaskEvent.__table__


async def append(
    tx: Tx,
    task_id: str,
    events: Sequence[tuple[str, dict[str, Any]]],
    *,
    lease: Lease | None = None,
    values: dict[str, Any] | None = None,
) -> tuple[int, bool]:
    """Append events to a task's log; returns (new last seq, cancel requested).

    With `lease`, the caller is a worker: the task must be running under that lease token,
    checked by the UPDATE that takes the seqs, otherwise `StaleLease` and nothing is written. `values` are further task
    columns to set in the same statement (a worker reporting its phase).
    """
    if not events:
        raise errors.Invalid("no events to append", code="empty_batch")
    now = utcnow()
    sent = await send_update_and_append(
        tx,
        task_id,
        {"updated_at": now, **(values or {})},
        events,
        now,
        status=TaskStatus.running.value if lease is not None else None,
        lease=lease,
    )
    row = await sent()
    if row is None:
        if lease is not None:
            raise await refusal(tx, task_id, lease)
        raise errors.NotFound(f"task {task_id} not found", code="task_not_found")
    return int(row["last_seq"]), bool(row["cancel_requested"])


async def send_update_and_append(
    tx: Tx,
    task_id: str,
    values: dict[str, Any],
    events: Sequence[tuple[str, dict[str, Any]]],
    now: datetime,
    *,
    status: str | None,
    lease: Lease | None = None,
) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    """Set `values` on the task (if it is in `status`, and holds `lease`) and append
    `events` (masked, as `insert_rows` does) in its next seqs. Sent (one statement on
    PostgreSQL, fastpath.send_update_task_events): await what this returns for the row
    after, or None when nothing matched and nothing was written."""
    sent = await fastpath.send_update_task_events(
        tx,
        task_id,
        values,
        masked(events),
        now,
        status=status,
        lease_hash=lease.hash if lease is not None else None,
        queues=lease.queues if lease is not None else (),
    )

    async def done() -> dict[str, Any] | None:
        found = await sent()
        if found is None:
            return None
        row, rows = found
        tx.notify(f"task:{task_id}", Batch(rows))
        return row

    return done


def masked(events: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any]]:
    """`events` with secrets masked in their data (kernel.redact), as stored."""
    return [(kind, redact_data(data)) for kind, data in events]


async def insert_rows(
    tx: Tx,
    task_id: str,
    last: int,
    attempt: int,
    now: datetime,
    events: Sequence[tuple[str, dict[str, Any]]],
) -> None:
    """Insert `events` as seqs `last - len + 1 .. last` (the caller has already bumped
    `tasks.last_seq` to `last` in this transaction) and wake the task's followers, handing
    this process's the rows as written (a `Batch`: they need not read them back).

    Secrets are masked here, at ingest (kernel.redact): what a model, a tool or a
    command printed is then masked in the log, every stream and every page of it alike."""
    rows = fastpath.event_rows(task_id, last, attempt, now, masked(events))
    await fastpath.insert_events(tx, rows)
    tx.notify(f"task:{task_id}", Batch(rows))


async def rows_after(
    session: AsyncSession, task_id: str, after: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """`list_after` as plain column dicts, without the ORM's identity map and instance
    state: the live feeds read every event once and only encode it."""
    if session.get_bind().dialect.name == "postgresql":
        return await fastpath.events_after(session, task_id, after, limit)
    t = TaskEvent.__table__
    stmt = sa.select(*t.c).where(t.c.task_id == task_id, t.c.seq > after).order_by(t.c.seq).limit(limit)
    return [dict(m) for m in (await session.execute(stmt)).mappings()]


async def list_after(
    session: AsyncSession, task_id: str, after: int = 0, limit: int = 1000
) -> list[TaskEvent]:
    """Events with seq > `after`, in order."""
    stmt = (
        select(TaskEvent)
        .where(TaskEvent.task_id == task_id, col(TaskEvent.seq) > after)
        .order_by(col(TaskEvent.seq))
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())
