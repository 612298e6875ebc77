"""`Database.dispose()` closes every connection, including those still in use when it runs.

SQLAlchemy's dispose closes only the idle connections; one in use would go back into the
discarded pool and, with an async driver, be garbage-collected open (a ResourceWarning in
whatever runs next). These cases hold a connection across dispose and check that the driver
connection itself ends up closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from kernel import errors
from store.db import Database

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


async def driver_connection(s: AsyncSession) -> Any:
    """The psycopg connection under a session (it has `closed`)."""
    return (await (await s.connection()).get_raw_connection()).driver_connection


async def test_dispose_waits_for_a_read_in_flight_and_closes_its_connection(db_url: str) -> None:
    db = Database(db_url)
    held, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []
    conns: list[Any] = []

    async def reader() -> None:
        async with db.read() as s:
            await s.execute(sa.text("SELECT 1"))
            conns.append(await driver_connection(s))
            held.set()
            await release.wait()
        order.append("read returned its connection")

    t = asyncio.create_task(reader())
    await asyncio.wait_for(held.wait(), 10)
    disposing = asyncio.create_task(db.dispose())
    release.set()
    await asyncio.wait_for(disposing, 10)
    order.append("disposed")
    await asyncio.wait_for(t, 10)
    assert order == ["read returned its connection", "disposed"]
    assert conns[0].closed


async def test_a_connection_returned_after_dispose_is_closed_not_pooled(db_url: str) -> None:
    db = Database(db_url)
    held, release = asyncio.Event(), asyncio.Event()
    conns: list[Any] = []

    async def writer() -> None:
        async with db.tx() as tx:
            await tx.execute(sa.text("SELECT 1"))
            conns.append(await driver_connection(tx.session))
            held.set()
            await release.wait()

    t = asyncio.create_task(writer())
    await asyncio.wait_for(held.wait(), 10)
    await asyncio.wait_for(db.dispose(grace=0), 10)  # gives up waiting at once
    assert not conns[0].closed  # still in use by the transaction
    release.set()
    await asyncio.wait_for(t, 10)  # the transaction commits, then returns its connection
    assert conns[0].closed


async def test_a_query_cancelled_during_dispose_leaves_no_connection_open(db_url: str) -> None:
    db = Database(db_url)
    querying = asyncio.Event()
    conns: list[Any] = []

    async def slow_read() -> None:
        async with db.read() as s:
            await s.execute(sa.text("SELECT 1"))
            conns.append(await driver_connection(s))
            querying.set()
            await s.execute(sa.text("SELECT pg_sleep(30)"))

    t = asyncio.create_task(slow_read())
    await asyncio.wait_for(querying.wait(), 10)
    disposing = asyncio.create_task(db.dispose())
    t.cancel()  # as a server shutting down cancels every task at once
    await asyncio.wait_for(disposing, 15)
    with pytest.raises(asyncio.CancelledError):
        await t
    assert conns[0].closed


async def test_no_free_connection_is_unavailable_not_a_crash(db_url: str) -> None:
    """Every pooled connection busy past pool_timeout: a 503-shaped error (retryable), not
    SQLAlchemy's TimeoutError escaping as a 500 (seen under `make bench-stream`)."""
    db = Database(db_url, pool_size=1, pool_timeout=0.2)  # 1 + 2 overflow connections
    held, release = asyncio.Event(), asyncio.Event()
    holding = 0

    async def hold() -> None:
        nonlocal holding
        async with db.read() as s:
            await s.execute(sa.text("SELECT 1"))
            holding += 1
            if holding == 3:
                held.set()
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(3)]
    try:
        await asyncio.wait_for(held.wait(), 10)
        with pytest.raises(errors.Unavailable) as err:
            async with db.tx() as tx:
                await tx.execute(sa.text("SELECT 1"))
        assert err.value.code == "database_busy"
    finally:
        release.set()
        await asyncio.gather(*holders)
        await db.dispose()
