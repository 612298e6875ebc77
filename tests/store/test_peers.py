"""A replica NOTIFYs its commits only while another one listens (store/peers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable

import psycopg
import pytest

from store.db import Database, Tx, libpq_dsn
from store.hub import CHANNEL, decode
from store.peers import PEER_TTL, WARM_UP, Peers
from tests.support import pg_replica


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_replica_notifies_unless_it_listens_and_has_heard_nobody_for_a_while() -> None:
    clock = Clock(1000.0)
    peers = Peers(clock)
    assert peers.needed()  # not listening: it cannot know (and a plain writer never listens)
    peers.listening()
    assert peers.needed()  # warming up: the replicas already there say hello meanwhile
    assert not peers.warmed()
    clock.now += WARM_UP + 0.1
    assert not peers.needed()  # alone
    assert peers.warmed() and not peers.warmed()  # once: its followers read again then
    peers.heard()
    clock.now += PEER_TTL - 0.1
    assert peers.needed()
    clock.now += 0.2
    assert not peers.needed()  # that one has not been heard of for too long
    peers.deaf()
    assert peers.needed()  # its LISTEN is down: it cannot know again
    assert not peers.said_hello()
    clock.now += PEER_TTL + 1
    assert peers.said_hello()  # late: the others may have stopped notifying it


async def _until(check: Callable[[], bool], what: str) -> None:
    """Wait, bounded, for `check()` to hold: it changes on this event loop."""
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


@contextlib.asynccontextmanager
async def _tap(db_url: str) -> AsyncGenerator[list[tuple[str, str]]]:
    """Every note NOTIFY carries on the channel, as they come (a plain LISTEN: not a
    replica, it never says hello)."""
    notes: list[tuple[str, str]] = []
    conn = await psycopg.AsyncConnection.connect(libpq_dsn(db_url), autocommit=True)
    await conn.execute(f"LISTEN {CHANNEL}")

    async def gather() -> None:
        async for n in conn.notifies():
            notes.extend(decode(n.payload))

    task = asyncio.create_task(gather())
    try:
        yield notes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await conn.close()


async def _commit(db: Database, topic: str, payload: str) -> None:
    async def work(tx: Tx) -> None:
        tx.notify(topic, payload)

    await db.fast_or_full(work)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_replica_alone_notifies_nobody_and_then_one_that_starts(db_url: str) -> None:
    writer = Database(db_url)  # never listens: always notifies
    try:
        async with pg_replica(db_url) as a, _tap(db_url) as tapped:
            a.hub.peers.clock = Clock(time.monotonic() + WARM_UP + 1)  # past its warm-up
            assert not a.hub.peers.needed()
            with a.hub.subscribe("test:alone") as own:
                await _commit(a, "test:alone", "from a")
                assert await own.get(5) == ["from a"]  # its own followers hear it all the same
            # Notes arrive in commit order: once the writer's is in, a's would be too.
            await _commit(writer, "test:alone", "marker")
            await _until(lambda: ("test:alone", "marker") in tapped, "the writer's note")
            assert ("test:alone", "from a") not in tapped
            # (the writer was heard: a notifies again for a while; it forgets, as if later)
            a.hub.peers.clock = Clock(time.monotonic() + WARM_UP + PEER_TTL + 2)
            assert not a.hub.peers.needed()

            async with pg_replica(db_url) as b:  # its hello, sent as it starts, reaches a
                await _until(a.hub.peers.needed, "a to hear b's hello")
                with b.hub.subscribe("test:two") as sub:
                    await _commit(a, "test:two", "to b")
                    assert await sub.get(10) == ["to b"]
    finally:
        await writer.dispose()
