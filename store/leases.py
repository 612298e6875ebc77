"""Lease tokens: what fences a worker's calls on the task it claimed.

A claim issues a random token (`secrets.token_urlsafe`), returns it once in the claim answer
and keeps only its SHA-256 in `tasks.lease_token_hash`; leaving `running` clears it. Every
worker call puts `lease_token_hash = sha256(token)` (and, for a key bound to queues,
`queue IN (...)`) into the WHERE of the statement that writes, so a call with another
worker's or an old token changes nothing. Comparing hashes in SQL needs no constant-time
care: the token has 256 bits, and its hash tells nothing about it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field

import sqlalchemy as sa

from kernel import errors
from store import fastrows
from store.db import Tx
from store.models import Task, TaskStatus, from_row

__all__ = ["Lease", "fenced", "hash_token", "new_token", "refusal"]

_tasks = Task.__table__


def new_token() -> tuple[str, str]:
    """A fresh token and the hash to store."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Lease:
    """A worker's credentials on one task call: the claim's token, and the queues its key
    is bound to (empty: any queue)."""

    token: str
    queues: Collection[str] = field(default_factory=frozenset[str])

    @property
    def hash(self) -> str:
        return hash_token(self.token)

    def where(self, table: sa.FromClause = _tasks) -> list[sa.ColumnElement[bool]]:
        """The conditions that fence a write on `table` (tasks, or an alias of it)."""
        conds = [table.c.lease_token_hash == self.hash, table.c.status == TaskStatus.running.value]
        if self.queues:
            conds.append(table.c.queue.in_(sorted(self.queues)))
        return conds


async def refusal(tx: Tx, task_id: str, lease: Lease) -> errors.MetaAgentError:
    """Why a fenced write matched no row, without telling the caller the current token."""
    row = (
        await tx.execute(
            sa.select(_tasks.c.status, _tasks.c.attempt, _tasks.c.queue).where(_tasks.c.id == task_id)
        )
    ).first()
    if row is None:
        return errors.NotFound(f"task {task_id} not found", code="task_not_found")
    return _stale(task_id, lease, row.status, row.attempt, row.queue)


def _stale(task_id: str, lease: Lease, status: str, attempt: int, queue: str) -> errors.MetaAgentError:
    if lease.queues and queue not in lease.queues:
        return queue_refused(queue)
    return errors.StaleLease(
        f"the lease token is not the current lease of task {task_id} (status {status}, attempt {attempt})",
        status_now=status,
        attempt=attempt,
    )


async def fenced(tx: Tx, task_id: str, lease: Lease) -> Task:
    """Read the task, refusing a stale lease (the write that follows is fenced again)."""
    # Through the transaction's driver, not the ORM session: in a fast transaction (an
    # exchange's failure report, a worker's fail or release) asking for the session would
    # run the whole work again in a full one (store.db.fast_or_full).
    row = await fastrows.task_row(tx, task_id)
    if row is None:
        raise errors.NotFound(f"task {task_id} not found", code="task_not_found")
    task = from_row(Task, row)
    conds_hold = (
        task.lease_token_hash == lease.hash
        and task.status == TaskStatus.running.value
        and (not lease.queues or task.queue in lease.queues)
    )
    if not conds_hold:
        raise _stale(task_id, lease, task.status, task.attempt, task.queue)
    return task


def queue_refused(queue: str) -> errors.Forbidden:
    return errors.Forbidden(f"this key is not bound to queue {queue!r}", code="queue_not_allowed")
