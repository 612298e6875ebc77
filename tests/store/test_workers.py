"""Worker liveness rows: a new worker's first claim and first heartbeat may race."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from store import catalog
from store.db import Database
from tests.store.test_tasks import seed


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has one writer at a time
async def test_a_new_workers_first_two_calls_may_race(db: Database) -> None:
    await seed(db)
    async with db.tx() as first:
        await catalog.touch_worker(first, "w-new", "q1", {"capacity": 2})  # inserted, not committed
        second = asyncio.create_task(_touch(db))
        # The second call saw no row and now waits on the first's uncommitted insert.
        for _ in range(500):
            async with db.read() as s:
                waiting = await s.scalar(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                )
            if waiting or second.done():
                break
            await asyncio.sleep(0.01)
        assert waiting, "the second call never blocked on the first"
    await asyncio.wait_for(second, 10)  # was: UniqueViolation on workers_pkey (a 500)
    async with db.read() as s:
        [worker] = await catalog.list_workers(s, "q1")
    assert worker.id == "w-new" and worker.capacity == 2


async def _touch(db: Database) -> None:
    async with db.tx() as tx:
        await catalog.touch_worker(tx, "w-new", "q1", {"capacity": 2, "running": 1})
