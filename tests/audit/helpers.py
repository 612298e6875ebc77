"""Shared by the audit tests: a catalog to make tasks in, tasks that finished long ago."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from store import catalog, tasks
from store.db import Database, sync_url
from store.models import Agent, Task, WorkerQueue, utcnow


async def seed_catalog(db: Database) -> None:
    async with db.tx() as tx:
        await catalog.create_queue(tx, WorkerQueue(name="q1"))
        await catalog.create_agent(tx, Agent(name="echo", runtime="noop", default_queue="q1"))


async def new_task(db: Database, prompt: str = "p", *, cancel: bool = False) -> Task:
    async with db.tx() as tx:
        task = await tasks.create_task(tx, tasks.NewTask(agent="echo", prompt=prompt))
        if cancel:
            task = await tasks.cancel(tx, task.id, by="test")
    return task


def finished_days_ago(db_url: str, task_ids: list[str], days: float) -> None:
    """Move the tasks' `finished_at` (and `created_at`) `days` into the past, as if they
    had ended then."""
    when: datetime = utcnow() - timedelta(days=days)
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            t = Task.__table__
            conn.execute(sa.update(t).where(t.c.id.in_(task_ids)).values(finished_at=when))
    finally:
        engine.dispose()
