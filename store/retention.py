"""Retention: finished tasks older than `META_AGENT_RETENTION_DAYS` go, with their events
and artifacts, in bounded batches; each batch is recorded in the audit log.

Only terminal tasks (completed, failed, cancelled) whose `finished_at` is older than the
cutoff are deleted: a pending, running or requires_input task is never touched, however
old. A batch is one transaction: pick up to `batch` such tasks (oldest id first, with
SKIP LOCKED on PostgreSQL, so several replicas pruning at once take different rows), delete
their artifact chunks (which have no foreign key), then the tasks; their events, artifact
rows, webhook deliveries and Slack bindings go by their `ON DELETE CASCADE`. The audit
entry `retention.prune` with the counts commits in the same transaction.

Every control-plane replica runs `run_pruner`; the audit log itself is never pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from kernel import errors
from kernel.statuses import TERMINAL
from store import audit
from store.db import Database, Tx
from store.models import Artifact, ArtifactChunk, Task, TaskEvent, utcnow

__all__ = ["BATCH", "prune", "prune_batch", "run_pruner"]

log = logging.getLogger(__name__)

BATCH = 500
_TERMINAL = sorted(s.value for s in TERMINAL)


async def prune_batch(tx: Tx, cutoff: datetime, *, batch: int = BATCH, days: int | None = None) -> int:
    """Delete up to `batch` terminal tasks that finished before `cutoff`; how many went."""
    pick = (
        sa.select(col(Task.id))
        .where(col(Task.status).in_(_TERMINAL), col(Task.finished_at) < cutoff)
        .order_by(col(Task.id))  # ids are time-ordered: old tasks come first on the status index
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    ids = [tid for (tid,) in (await tx.execute(pick)).all()]
    if not ids:
        return 0
    events = (
        await tx.execute(sa.select(sa.func.count()).where(col(TaskEvent.task_id).in_(ids)))
    ).scalar_one()
    arts = [
        a for (a,) in (await tx.execute(sa.select(col(Artifact.id)).where(col(Artifact.task_id).in_(ids))))
    ]
    if arts:
        await tx.execute(sa.delete(ArtifactChunk).where(col(ArtifactChunk.artifact_id).in_(arts)))
    await tx.execute(sa.delete(Task).where(col(Task.id).in_(ids)))
    details = {
        "tasks": len(ids),
        "events": int(events),
        "artifacts": len(arts),
        "finished_before": cutoff.isoformat(),
        "first_task_id": ids[0],
        "last_task_id": ids[-1],
    }
    if days is not None:
        details["retention_days"] = days
    await audit.record(tx, audit.SYSTEM, "retention.prune", "tasks", None, details)
    return len(ids)


async def prune(
    db: Database, days: int, *, now: datetime | None = None, batch: int = BATCH, max_batches: int = 1000
) -> int:
    """Prune everything due, one transaction per batch; the number of tasks deleted.

    `max_batches` bounds one round (500,000 tasks by default): the next round goes on."""
    if days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=days)
    total = 0
    for _ in range(max_batches):
        async with db.tx() as tx:
            n = await prune_batch(tx, cutoff, batch=batch, days=days)
        total += n
        if n < batch:
            break
    return total


async def run_pruner(db: Database, days: int, stop: asyncio.Event, interval: float = 3600.0) -> None:
    """Prune every `interval` seconds until `stop` is set (never when `days` is 0)."""
    if days <= 0:
        return
    while not stop.is_set():
        try:
            n = await prune(db, days)
            if n:
                log.info("retention: deleted %d finished task(s) older than %d day(s)", n, days)
        except errors.Unavailable:
            log.warning("retention: database unavailable")
        except Exception:
            log.exception("retention pruner failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
