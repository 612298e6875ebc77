"""Figures for `/metrics`, cheap at any number of tasks.

A scrape comes every few seconds from every Prometheus, so it reads no table in full: only
the unfinished statuses are counted (the finished ones grow forever; their totals are
counters kept by the process as tasks finish), each count stops at `cap` rows of an index
(`ix_tasks_status_id` per status, `ix_tasks_claim` per queue), and live workers are found by
their heartbeat index.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from kernel.statuses import UNFINISHED
from store.catalog import live_since
from store.models import Task, TaskStatus, Worker, WorkerQueue

__all__ = ["GAUGE_CAP", "UNFINISHED", "live_workers", "pending_by_queue", "unfinished_counts"]

GAUGE_CAP = 10_000
# SQLite refuses a compound SELECT of more than 500 parts.
_UNION_PARTS = 200


def _capped(where: list[sa.ColumnElement[bool]], label: str, cap: int) -> sa.Select[str, int]:
    rows = select(sa.literal(1).label("one")).select_from(Task).where(*where).limit(cap + 1).subquery()
    return select(sa.literal(label).label("label"), sa.func.count().label("n")).select_from(rows)


async def _run(
    session: AsyncSession, parts: list[sa.Select[str, int]], cap: int
) -> dict[str, tuple[int, bool]]:
    out: dict[str, tuple[int, bool]] = {}
    for i in range(0, len(parts), _UNION_PARTS):
        chunk = parts[i : i + _UNION_PARTS]
        stmt: sa.Select[str, int] | sa.CompoundSelect[str, int] = (
            sa.union_all(*chunk) if len(chunk) > 1 else chunk[0]
        )
        for label, n in (await session.execute(stmt)).all():
            out[label] = (min(int(n), cap), int(n) > cap)
    return out


async def unfinished_counts(session: AsyncSession, cap: int = GAUGE_CAP) -> dict[str, tuple[int, bool]]:
    """Per unfinished status: (count, capped); a capped count means "`cap` or more"."""
    parts = [_capped([col(Task.status) == s], s, cap) for s in UNFINISHED]
    return await _run(session, parts, cap)


async def pending_by_queue(session: AsyncSession, cap: int = GAUGE_CAP) -> dict[str, tuple[int, bool]]:
    """Per queue: (pending tasks, capped)."""
    queues = (await session.execute(select(WorkerQueue.name).order_by(col(WorkerQueue.name)))).scalars().all()
    parts = [
        _capped([col(Task.queue) == q, col(Task.status) == TaskStatus.pending.value], q, cap) for q in queues
    ]
    return await _run(session, parts, cap) if parts else {}


async def live_workers(session: AsyncSession) -> dict[str, int]:
    """Per queue: workers heard from lately."""
    rows = await session.execute(
        select(Worker.queue, sa.func.count())
        .where(col(Worker.last_heartbeat_at) >= live_since())
        .group_by(Worker.queue)
    )
    return {queue: int(n) for queue, n in rows.all()}
