"""A replica NOTIFYs its commits only while another one listens (store/peers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator

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
    assert peers.heard()  # the first: the hub logs it
    clock.now += PEER_TTL - 0.1
    assert peers.needed()
    assert not peers.heard()  # heard within PEER_TTL: the same period, logged once
    clock.now += PEER_TTL - 0.1
    clock.now += 0.2
    assert not peers.needed()  # that one has not been heard of for too long
    assert peers.heard()  # heard again after that: a new period, logged again
    peers.deaf()
    assert peers.needed()  # its LISTEN is down: it cannot know again
    assert not peers.said_hello()
    clock.now += PEER_TTL + 1
    assert peers.said_hello()  # late: the others may have stopped notifying it


class Tap:
    """Every note NOTIFY carries on the channel, as they come (a plain LISTEN: not a
    replica, it never says hello)."""

    def __init__(self) -> None:
        self.notes: list[tuple[str, str]] = []
        self.came = asyncio.Condition()

    async def add(self, notes: list[tuple[str, str]]) -> None:
        async with self.came:
            self.notes.extend(notes)
            self.came.notify_all()

    async def until(self, note: tuple[str, str]) -> None:
        async with asyncio.timeout(10), self.came:
            await self.came.wait_for(lambda: note in self.notes)


@contextlib.asynccontextmanager
async def _tap(db_url: str) -> AsyncGenerator[Tap]:
    tap = Tap()
    conn = await psycopg.AsyncConnection.connect(libpq_dsn(db_url), autocommit=True)
    await conn.execute(f"LISTEN {CHANNEL}")

    async def gather() -> None:
        async for n in conn.notifies():
            await tap.add(decode(n.payload))

    task = asyncio.create_task(gather())
    try:
        yield tap
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
async def test_a_replica_alone_notifies_nobody_and_then_one_that_starts(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="store.hub")
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
                await tapped.until(("test:alone", "marker"))
                assert ("test:alone", "from a") not in tapped.notes
                assert await own.get(5) == ["marker"]  # a has heard the writer too, by now
            # (the writer was heard: a notifies again for a while; it forgets, as if later)
            a.hub.peers.clock = Clock(time.monotonic() + WARM_UP + PEER_TTL + 2)
            assert not a.hub.peers.needed()

            heard = asyncio.Event()  # a hears another replica (nothing else talks now)
            hear = a.hub.peers.heard
            a.hub.peers.heard = lambda: (hear(), heard.set())[0]  # type: ignore[method-assign]
            async with pg_replica(db_url) as b:  # its hello, sent as it starts, reaches a
                async with asyncio.timeout(10):
                    await heard.wait()
                assert a.hub.peers.needed()
                assert "another replica listens on this database" in caplog.text
                with b.hub.subscribe("test:two") as sub:
                    await _commit(a, "test:two", "to b")
                    assert await sub.get(10) == ["to b"]
    finally:
        await writer.dispose()
