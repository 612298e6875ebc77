"""store.auth.KeyCache: whether any key exists, read once per expiry, not once per request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from store import auth, keys
from store.db import Database


class CountedReads:
    """keys.has_active_keys, counted, each read held until `release` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.release = asyncio.Event()
        real = keys.has_active_keys

        async def counted(session: Any) -> bool:
            self.count += 1
            await self.release.wait()
            return await real(session)

        monkeypatch.setattr(keys, "has_active_keys", counted)


async def test_requests_that_find_it_expired_share_one_read(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = CountedReads(monkeypatch)
    cache = auth.KeyCache(ttl=60)
    waiting = [asyncio.create_task(cache.any(db)) for _ in range(10)]
    await asyncio.sleep(0)  # each has asked
    reads.release.set()
    assert await asyncio.gather(*waiting) == [False] * 10
    assert reads.count == 1
    assert await cache.any(db) is False and reads.count == 1  # cached


async def test_a_read_begun_before_invalidate_is_not_the_answer_after_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key made while a read is on its way: the next request reads again (an open server
    must close at once), and the old read does not overwrite the fresh value."""
    reads = CountedReads(monkeypatch)
    cache = auth.KeyCache(ttl=60)
    early = asyncio.create_task(cache.any(db))
    await asyncio.sleep(0)
    cache.invalidate()
    late = asyncio.create_task(cache.any(db))
    await asyncio.sleep(0)
    reads.release.set()
    await asyncio.gather(early, late)
    assert reads.count == 2
    assert cache._reading is None  # pyright: ignore[reportPrivateUsage]


async def test_a_caller_that_goes_away_does_not_cancel_the_others_read(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = CountedReads(monkeypatch)
    cache = auth.KeyCache(ttl=60)
    first = asyncio.create_task(cache.any(db))
    second = asyncio.create_task(cache.any(db))
    await asyncio.sleep(0)
    first.cancel()
    reads.release.set()
    assert await second is False
    assert reads.count == 1
