"""Tasks whose worker went away: leases that ran out, and workers that said goodbye.

The control plane's reaper loop (board_api.app) calls these on every replica at once; rows
are picked with SKIP LOCKED and every change is re-checked by the state machine.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from store import catalog
from store.db import Tx
from store.models import Task, TaskStatus, Worker, utcnow
from store.statemachine import transition

__all__ = ["forget_dead_workers", "has_expired_leases", "reap_expired", "worker_gone"]

S = TaskStatus
# As ix_tasks_lease's own condition (running tasks only), written out: a bound parameter
# would not prove it, and a plan for any value could not use that index.
RUNNING: sa.ColumnElement[str] = sa.literal_column(f"'{S.running.value}'")


def expired(now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    """Running tasks whose lease ran out by `now`: what ix_tasks_lease holds, read in order."""
    return col(Task.status) == RUNNING, col(Task.lease_expires_at) < now


async def has_expired_leases(session: AsyncSession, now: datetime | None = None) -> bool:
    """Whether any running task's lease has run out (a cheap indexed read)."""
    stmt = sa.select(col(Task.id)).where(*expired(now or utcnow())).limit(1)
    return (await session.execute(stmt)).first() is not None


async def reap_expired(tx: Tx, now: datetime | None = None, batch: int = 100) -> list[Task]:
    """Tasks whose lease ran out go back to pending, or fail as `worker_lost` when they have
    used their attempts, or end cancelled when a cancel was requested. Safe on many replicas
    at once: rows are picked with SKIP LOCKED and re-checked by the state machine."""
    now = now or utcnow()
    stmt = (
        sa.select(col(Task.id), col(Task.lost_leases), col(Task.max_attempts), col(Task.cancel_requested))
        .where(*expired(now))
        .order_by(col(Task.lease_expires_at))
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    out: list[Task] = []
    for tid, lost, max_attempts, cancel_requested in (await tx.execute(stmt)).all():
        lost += 1
        if cancel_requested:
            t = await transition(
                tx,
                tid,
                S.cancelled,
                expect=frozenset({S.running}),
                values={"lost_leases": lost},
                event={"reason": "lease expired after cancel"},
            )
        elif lost >= max_attempts:
            msg = f"the worker stopped responding {lost} time(s); giving up"
            t = await transition(
                tx,
                tid,
                S.failed,
                expect=frozenset({S.running}),
                values={"lost_leases": lost, "error_code": "worker_lost", "error_message": msg},
                event={"error": {"code": "worker_lost", "message": msg}},
            )
        else:
            t = await transition(
                tx,
                tid,
                S.pending,
                expect=frozenset({S.running}),
                values={"lost_leases": lost},
                event={"reason": "lease expired"},
            )
        out.append(t)
    return out


async def worker_gone(tx: Tx, worker_id: str) -> list[str]:
    """A worker said goodbye: hand back anything still leased to it, then forget it.

    A claim can be granted just as the worker stops polling; without this such a task
    would wait for its lease to run out.
    """
    rows = (
        await tx.execute(
            sa.select(col(Task.id))
            .where(col(Task.worker_id) == worker_id, col(Task.status) == S.running.value)
            .with_for_update()
        )
    ).all()
    released: list[str] = []
    for (tid,) in rows:
        await transition(
            tx, tid, S.pending, expect=frozenset({S.running}), event={"reason": "worker shut down"}
        )
        released.append(tid)
    await catalog.forget_worker(tx, worker_id)
    return released


async def forget_dead_workers(tx: Tx, older_than_seconds: float = 3600) -> None:
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    await tx.execute(sa.delete(Worker).where(col(Worker.last_heartbeat_at) < cutoff))
