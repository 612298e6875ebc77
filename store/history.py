"""Executions of a date range: the board's History view and `execution export`.

The range is on `created_at` (when the execution was asked for). Task ids are UUIDv7, so
`since` also bounds the primary key (`audit.id_floor`) and the newest-first page and the
oldest-first export are range scans; the other filters are `store.tasks.filter_tasks`'s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from kernel import errors
from store.audit import id_floor
from store.db import Database
from store.events import list_after
from store.models import Task, TaskEvent
from store.tasks import decode_cursor, encode_cursor, filter_tasks

__all__ = ["Range", "iter_executions", "list_executions"]

EVENT_PAGE = 1000


@dataclass(frozen=True)
class Range:
    since: datetime | None = None
    until: datetime | None = None

    def check(self) -> None:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise errors.Invalid("`until` must be after `since`", code="invalid_range")

    def where(self) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = []
        if self.since is not None:
            out += [col(Task.id) >= id_floor(self.since), col(Task.created_at) >= self.since]
        if self.until is not None:
            out.append(col(Task.created_at) < self.until)
        return out


async def list_executions(
    db: Database, rng: Range, *, limit: int = 50, cursor: str | None = None, **filters: Any
) -> tuple[list[Task], str | None]:
    """A page of the range's tasks, newest first, and the next page's cursor."""
    if not 1 <= limit <= 200:
        raise errors.Invalid("limit must be between 1 and 200", code="invalid_limit")
    rng.check()
    stmt = filter_tasks(select(Task), **filters).where(*rng.where())
    if cursor:
        stmt = stmt.where(col(Task.id) < decode_cursor(cursor))
    stmt = stmt.order_by(col(Task.id).desc()).limit(limit + 1)
    async with db.read() as s:
        rows = list((await s.execute(stmt)).scalars().all())
    nxt = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt


async def iter_executions(
    db: Database, rng: Range, *, batch: int = 100, **filters: Any
) -> AsyncIterator[tuple[Task, list[TaskEvent]]]:
    """Every task of the range (oldest first) with its events, a batch of tasks per read:
    memory holds one batch and one task's events, whatever the range's size."""
    rng.check()
    last: str | None = None
    while True:
        stmt = filter_tasks(select(Task), **filters).where(*rng.where())
        if last is not None:
            stmt = stmt.where(col(Task.id) > last)
        stmt = stmt.order_by(col(Task.id)).limit(batch)
        async with db.read() as s:
            rows = list((await s.execute(stmt)).scalars().all())
        for task in rows:
            yield task, await _events(db, task.id)
        if len(rows) < batch:
            return
        last = rows[-1].id


async def _events(db: Database, task_id: str) -> list[TaskEvent]:
    out: list[TaskEvent] = []
    while True:
        async with db.read() as s:
            page = await list_after(s, task_id, out[-1].seq if out else 0, EVENT_PAGE)
        out += page
        if len(page) < EVENT_PAGE:
            return out
