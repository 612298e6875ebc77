"""The event batcher: when it posts, what it leaves for the final call, and in which order."""

from __future__ import annotations

import asyncio
from typing import Any

from worker.batcher import EventBatcher


class Poster:
    """Records batches; can hold a post open until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.posted = asyncio.Event()
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.fail_next = 0

    async def __call__(self, events: list[dict[str, Any]]) -> None:
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("control plane said no")
        self.batches.append(events)
        self.posted.set()

    def seqs(self) -> list[int]:
        return [e["data"]["n"] for batch in self.batches for e in batch]


def add(batcher: EventBatcher, start: int, stop: int) -> None:
    for n in range(start, stop):
        batcher.add("log", {"n": n})


async def test_a_lone_event_is_posted_after_the_interval():
    post = Poster()
    batcher = EventBatcher(post, interval=0.01)
    batcher.add("log", {"n": 1})
    await asyncio.wait_for(post.posted.wait(), 5)
    assert post.batches == [[{"kind": "log", "data": {"n": 1}}]]
    assert await batcher.drain() == []


async def test_a_full_buffer_is_posted_without_waiting_for_the_interval():
    post = Poster()
    batcher = EventBatcher(post, interval=3600)
    add(batcher, 0, 99)
    await asyncio.sleep(0)  # let the flusher run: 99 pending is not full, so it must wait
    assert post.batches == []
    add(batcher, 99, 100)
    await asyncio.wait_for(post.posted.wait(), 5)
    assert post.seqs() == list(range(100))
    batcher.abandon()


async def test_drain_leaves_a_bounded_remainder_and_keeps_the_order():
    post = Poster()
    batcher = EventBatcher(post, interval=3600)
    add(batcher, 0, 250)
    rest = await batcher.drain()
    assert [len(b) for b in post.batches] == [100, 100]
    assert post.seqs() + [e["data"]["n"] for e in rest] == list(range(250))


async def test_a_large_event_volume_is_split_by_size():
    post = Poster()
    batcher = EventBatcher(post, interval=3600, max_bytes=1000)
    for n in range(10):
        batcher.add("log", {"n": n, "line": "x" * 300})
    rest = await batcher.drain()
    assert all(len(b) <= 4 for b in post.batches) and len(rest) <= 4
    assert post.seqs() + [e["data"]["n"] for e in rest] == list(range(10))


async def test_drain_waits_for_the_post_in_flight():
    post = Poster()
    post.gate = asyncio.Event()
    batcher = EventBatcher(post, interval=3600)
    add(batcher, 0, 100)
    await asyncio.wait_for(post.started.wait(), 5)
    add(batcher, 100, 103)  # queued behind the post in flight
    drain = asyncio.create_task(batcher.drain())
    await asyncio.sleep(0)
    assert not drain.done()
    post.gate.set()
    rest = await asyncio.wait_for(drain, 5)
    assert post.seqs() == list(range(100))
    assert [e["data"]["n"] for e in rest] == [100, 101, 102]


async def test_a_failed_post_does_not_stop_later_batches():
    post = Poster()
    post.fail_next = 1
    batcher = EventBatcher(post, interval=0.01)
    batcher.add("log", {"n": 1})
    await asyncio.wait_for(post.started.wait(), 5)
    batcher.add("log", {"n": 2})
    await asyncio.wait_for(post.posted.wait(), 5)
    assert post.seqs() == [2]
    batcher.abandon()


async def test_abandon_drops_everything_and_ignores_late_events():
    post = Poster()
    batcher = EventBatcher(post, interval=3600)
    add(batcher, 0, 5)
    batcher.abandon()
    batcher.add("log", {"n": 9})
    assert batcher.pending == 0 and post.batches == []


async def test_values_json_cannot_encode_are_stringified():
    post = Poster()
    batcher = EventBatcher(post)
    batcher.add("log", {"n": 1, "when": object})
    [event] = await batcher.drain()
    assert event["data"] == {"n": 1, "when": str(object)}
