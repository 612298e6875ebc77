"""Live feeds (board_api/feeds.py) fed with the batches this process commits: every follower
gets every event exactly once and in order whether a batch is handed over, missed (a gap,
read back), another replica's (NOTIFY, read back) or resumed from with Last-Event-ID; and a
feed or a follower that falls behind holds a bounded amount in memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from board_api.feeds import MAX_READS, Feed, Feeds, event_frame
from store import tasks
from store.catalog import create_agent, create_queue
from store.db import Database
from store.events import rows_after
from store.hub import Batch
from store.leases import Lease
from store.models import Agent, WorkerQueue
from tests.support import pg_replica


async def running_task(db: Database) -> tuple[str, Lease]:
    """A task claimed by a worker: seq 1 `pending`, seq 2 `running`."""
    async with db.tx() as tx:
        await create_queue(tx, WorkerQueue(name="q1"))
        await create_agent(tx, Agent(name="echo", runtime="noop", default_queue="q1"))
    async with db.tx() as tx:
        tid = (await tasks.create_task(tx, tasks.NewTask(prompt="stream", agent="echo"))).id
    async with db.tx() as tx:
        (claimed,) = await tasks.claim_tasks(tx, "q1", "w1", 1, 60)
    return tid, Lease(claimed.token)


async def post(db: Database, tid: str, lease: Lease, start: int, n: int) -> int:
    """`n` deltas through the events route's own unit of work; the new last seq."""
    events = [("message_delta", {"text": f"δ {i}", "n": i, "t": i / 3}) for i in range(start, start + n)]
    last, _ = await db.fast_or_full(lambda tx: tasks.worker_events(tx, tid, lease, events))
    return last


async def complete(db: Database, tid: str, lease: Lease) -> int:
    async with db.tx() as tx:
        return (await tasks.complete(tx, tid, lease, result="ok")).last_seq


def parse(chunk: bytes) -> list[tuple[str, bytes]]:
    """(id or 'end', the frame's bytes) per frame of a chunk; pings left out."""
    out: list[tuple[str, bytes]] = []
    for frame in chunk.split(b"\n\n"):
        if not frame or frame.startswith(b":"):
            continue
        fields = dict(line.split(b": ", 1) for line in frame.split(b"\n"))
        ident = "end" if fields.get(b"event") == b"end" else fields[b"id"].decode()
        out.append((ident, frame + b"\n\n"))
    return out


class Follower:
    """One SSE follower of a feed, as the stream route runs it, recording what it gets."""

    def __init__(self, feeds: Feeds, tid: str, after: int = 0) -> None:
        self.feeds, self.tid, self.after = feeds, tid, after
        self.got: list[tuple[str, bytes]] = []
        self.feed: Feed | None = None
        self.changed = asyncio.Condition()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with self.feeds.follow(self.tid) as feed:
            self.feed = feed
            async for chunk in self.feeds.frames_after(feed, self.after, 30):
                async with self.changed:
                    self.got.extend(parse(chunk))
                    self.changed.notify_all()

    async def until(self, done: Callable[[], bool], timeout: float = 15) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(done)

    async def has(self, seq: int) -> None:
        await self.until(lambda: any(i != "end" and int(i) >= seq for i, _ in self.got))

    async def ended(self) -> list[int]:
        """The seqs received, once the `end` frame has come (and after it nothing)."""
        await asyncio.wait_for(self.task, 15)
        assert self.got[-1][0] == "end"
        return [int(i) for i, _ in self.got[:-1]]

    def stop(self) -> None:
        self.task.cancel()


async def test_handed_batches_reach_the_follower_once_in_order_without_reading_back(db: Database) -> None:
    tid, lease = await running_task(db)
    feeds = Feeds(db)
    f = Follower(feeds, tid)
    await f.has(2)  # the first read is done: what follows is handed over
    for k in range(10):
        await post(db, tid, lease, 5 * k, 5)
    last = await complete(db, tid, lease)
    assert await f.ended() == list(range(1, last + 1))
    # Read: the first two events; the completion's status event makes the feed look for the
    # end, which reads the (empty) rest of the log.
    assert (feeds.read_back, feeds.handed) == (2, last - 2)
    # A handed frame is the very frame the log gives for that event.
    async with db.read() as s:
        stored = [event_frame(r) for r in await rows_after(s, tid)]
    assert [frame for _, frame in f.got[:-1]] == stored


async def test_a_claim_is_handed_to_the_feed_without_reading_back(db: Database) -> None:
    """A follower of a pending task (a client that created it, then follows it): its claim's
    status event comes with the claim's note and is framed as it is. The feed read the log
    twice for it (the event, then whether the task had ended) while the worker started the
    task; a `running` status is not an end."""
    async with db.tx() as tx:
        await create_queue(tx, WorkerQueue(name="q1"))
        await create_agent(tx, Agent(name="echo", runtime="noop", default_queue="q1"))
    async with db.tx() as tx:
        tid = (await tasks.create_task(tx, tasks.NewTask(prompt="follow", agent="echo"))).id
    feeds = Feeds(db)
    f = Follower(feeds, tid)
    await f.has(1)
    assert (feeds.read_back, feeds.handed) == (1, 0)
    (claimed,) = await db.fast_or_full(lambda tx: tasks.claim_tasks(tx, "q1", "w1", 1, 60, touch=False))
    await f.has(2)
    assert (feeds.read_back, feeds.handed) == (1, 1)
    last = await complete(db, tid, Lease(claimed.token))
    assert await f.ended() == list(range(1, last + 1))
    async with db.read() as s:
        stored = [event_frame(r) for r in await rows_after(s, tid)]
    assert [frame for _, frame in f.got[:-1]] == stored  # the handed frame is the log's


async def test_a_batch_published_twice_is_framed_once(db: Database) -> None:
    tid, lease = await running_task(db)
    feeds = Feeds(db)
    f = Follower(feeds, tid)
    await f.has(2)
    captured: list[Batch] = []
    with db.hub.subscribe(f"task:{tid}") as sub:
        await post(db, tid, lease, 0, 3)
        captured.extend(p for p in await sub.get(5) or [] if isinstance(p, Batch))
    db.hub.publish(f"task:{tid}", captured[0])  # a duplicate delivery
    last = await post(db, tid, lease, 3, 2)
    await f.has(last)
    last = await complete(db, tid, lease)
    assert await f.ended() == list(range(1, last + 1))


async def test_a_missed_batch_is_read_back(db_url: str, db: Database) -> None:
    """Events committed by another process (here another Database: no notification reaches
    this one) leave a gap before the next handed batch; the feed reads it from the log."""
    tid, lease = await running_task(db)
    feeds = Feeds(db)
    f = Follower(feeds, tid)
    await f.has(2)
    other = Database(db_url)
    try:
        missed = await post(other, tid, lease, 0, 4)  # seqs 3..6, unannounced here
    finally:
        await other.dispose()
    await post(db, tid, lease, 4, 3)  # 7..9: starts past the feed's last
    last = await complete(db, tid, lease)
    assert await f.ended() == list(range(1, last + 1))
    assert feeds.read_back >= missed  # the gap and the batch after it came from the log


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # replicas: PostgreSQL's case
async def test_news_from_another_replica_is_read_without_looking_up_the_task(
    db_url: str, db: Database
) -> None:
    """Each NOTIFY from another replica makes the feed read the log; it reads the task's row
    too (has it ended?) only when the log shows a status event: a task ends with one. The
    row was read on every wake-up, a third of a two-replica server's feed reads."""
    tid, lease = await running_task(db)
    feeds = Feeds(db)
    f = Follower(feeds, tid)
    await f.has(2)
    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    real_fast_read = db.fast_read

    async def fast_read(batch: Any) -> list[list[tuple[Any, ...]]]:
        # The feed's reads on PostgreSQL: plain SQL through Database.fast_read
        statements.extend(sql for sql, _ in batch)
        return await real_fast_read(batch)

    db.fast_read = fast_read  # type: ignore[method-assign]
    other = Database(db_url)  # "another replica": its commits notify nothing here
    try:
        for k in range(5):
            last = await post(other, tid, lease, 3 * k, 3)
            db.hub.publish(f"task:{tid}", str(last))  # what its NOTIFY carries: the last seq
            await f.has(last)
        reads = len(statements)
        async with other.tx() as tx:
            last = (await tasks.complete(tx, tid, lease, result="ok")).last_seq
        db.hub.publish(f"task:{tid}", str(last))
        assert await f.ended() == list(range(1, last + 1))
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
        db.fast_read = real_fast_read  # type: ignore[method-assign]
        await other.dispose()
    assert reads >= 5  # a read per NOTIFY at least
    # The follower got every batch, so the feed read each; none of those reads touched tasks.
    assert not [s for s in statements[:reads] if "FROM tasks" in s]
    assert any("FROM tasks" in s for s in statements[reads:])  # the status event: ended?


async def test_a_follower_resuming_with_last_event_id_gets_the_rest_once(db: Database) -> None:
    tid, lease = await running_task(db)
    feeds = Feeds(db, window=5)  # the resume point falls behind the window: a gap read
    live = Follower(feeds, tid)
    first = Follower(feeds, tid)
    await post(db, tid, lease, 0, 4)  # 3..6
    await first.has(6)
    first.stop()
    for k in range(6):
        await post(db, tid, lease, 4 + 3 * k, 3)
    resumed = Follower(feeds, tid, after=4)  # Last-Event-ID: 4
    last = await complete(db, tid, lease)
    assert await resumed.ended() == list(range(5, last + 1))
    assert await live.ended() == list(range(1, last + 1))
    assert feeds.handed > 0


async def test_a_slow_feed_drops_its_mailbox_and_reads_back(db: Database) -> None:
    """The pump cannot take batches (a follower holds the feed's lock: a stalled loop alike):
    the batches handed meanwhile stay under the mailbox's bound, the overflow is dropped,
    and the follower still gets every event once, in order, from the log."""
    tid, lease = await running_task(db)
    feeds = Feeds(db, inbox=30)
    f = Follower(feeds, tid)
    await f.has(2)
    feed = f.feed
    assert feed is not None and feed.inbox is not None
    sizes: list[int] = []
    async with feed.changed:
        for k in range(20):
            await post(db, tid, lease, 10 * k, 10)
            sizes.append(feed.inbox.size)
    assert max(sizes) <= 30 and len(feed.inbox.items) <= 3
    last = await complete(db, tid, lease)
    assert await f.ended() == list(range(1, last + 1))
    assert feeds.read_back > 2  # the overflow was read from the log


async def test_a_slow_follower_holds_at_most_the_window(db: Database) -> None:
    """A follower that stops reading (a slow client) pins nothing: the feed keeps `window`
    frames, and the follower reads what it missed from the log when it carries on."""
    tid, lease = await running_task(db)
    feeds = Feeds(db, window=10)
    fast = Follower(feeds, tid)
    async with feeds.follow(tid) as feed:
        slow = feeds.frames_after(feed, 0, 30)
        got = parse(await anext(slow))
        for k in range(10):
            last = await post(db, tid, lease, 10 * k, 10)
            await fast.has(last)
            assert len(feed.frames) <= 10
        last = await complete(db, tid, lease)
        async for chunk in slow:
            got.extend(parse(chunk))
    assert [i for i, _ in got] == [*map(str, range(1, last + 1)), "end"]
    assert await fast.ended() == list(range(1, last + 1))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # replicas share PostgreSQL
async def test_two_replicas_each_follower_gets_every_event_once(db_url: str, db: Database) -> None:
    """Events written on replica A: A's follower is handed them, and so is B's, from A's
    NOTIFY, which carries a small batch's rows (store/hub.py): B reads the log only for its
    first events and for the end, and frames the rest exactly as the log would."""
    tid, lease = await running_task(db)
    async with pg_replica(db_url) as b:
        here, there = Feeds(db), Feeds(b)
        fa, fb = Follower(here, tid), Follower(there, tid)
        await fa.has(2)
        await fb.has(2)
        for k in range(8):
            await post(db, tid, lease, 4 * k, 4)
        last = await complete(db, tid, lease)
        assert await fa.ended() == list(range(1, last + 1))
        assert await fb.ended() == list(range(1, last + 1))
    assert here.handed > 0
    # Read: the first two (created, claimed) at the start. The deltas and the completion's
    # status event came with the NOTIFYs (the status event then made the feed look for the
    # end, which read nothing more).
    assert (there.handed, there.read_back) == (last - 2, 2)
    frames = {json.loads(frame.split(b"data: ", 1)[1])["seq"] for _, frame in fb.got[:-1]}
    assert frames == set(range(1, last + 1))
    async with db.read() as s:
        stored = [event_frame(r) for r in await rows_after(s, tid)]
    assert [frame for _, frame in fb.got[:-1]] == stored


async def test_feeds_woken_together_read_the_log_a_few_at_a_time(db: Database) -> None:
    """News for many tasks at once (another replica's NOTIFYs) wakes every feed; their reads
    share a few connections instead of taking one each, past the pool's size."""
    tid, _ = await running_task(db)
    async with db.tx() as tx:
        more = [
            (await tasks.create_task(tx, tasks.NewTask(prompt=f"s{i}", agent="echo"))).id for i in range(19)
        ]
    ids = [tid, *more]
    feeds = Feeds(db)
    followers = [Follower(feeds, t) for t in ids]
    for f in followers:
        await f.has(1)  # each feed has read its log once: the pumps wait on their mailboxes
    real_read, real_fast_read = db.read, db.fast_read
    inside, peak, reads = 0, 0, 0
    all_read = asyncio.Event()

    @contextlib.contextmanager
    def one_read() -> Generator[None]:
        nonlocal inside, peak, reads
        inside += 1
        peak = max(peak, inside)
        try:
            yield
        finally:
            inside -= 1
            reads += 1
            if reads >= len(ids):
                all_read.set()

    @contextlib.asynccontextmanager
    async def counted() -> AsyncGenerator[AsyncSession]:
        async with real_read() as s:
            with one_read():
                await asyncio.sleep(0)  # a read takes a turn of the loop, or more
                yield s

    async def counted_fast(statements: Any) -> list[list[tuple[Any, ...]]]:
        # PostgreSQL's feeds read through Database.fast_read (a connection of its own pool)
        with one_read():
            await asyncio.sleep(0)
            return await real_fast_read(statements)

    db.read = counted  # type: ignore[method-assign]
    db.fast_read = counted_fast  # type: ignore[method-assign]
    try:
        for t in ids:
            db.hub.publish(f"task:{t}", "news")  # not a Batch: each feed reads the log
        await asyncio.wait_for(all_read.wait(), 15)
    finally:
        db.read = real_read  # type: ignore[method-assign]
        db.fast_read = real_fast_read  # type: ignore[method-assign]
        for f in followers:
            f.stop()
        feeds.close()
    assert 1 < peak <= MAX_READS
