"""Shared live feeds: one reader per followed task, however many followers it has.

Without this, every SSE follower of a task re-reads the event log on every wake-up, so an
event seen by 1,000 followers costs 1,000 queries and 1,000 serialisations. A `Feed` takes
each new batch once, keeps the encoded frames of a recent window, and its followers copy
frames from there. A follower that starts (or falls) behind the window reads its gap
straight from the database, so resuming with Last-Event-ID stays exact.

How a feed learns of new events: a batch committed by this process comes with its rows
(store.hub.Batch), and so does a small batch of another replica's (its NOTIFY carries them);
when it continues the feed (first seq = the feed's last + 1) it is framed as it is, without
reading it back. Anything else reads the log after the feed's last seq, as the single source
of truth: a gap (a batch published out of order, or lost to a full mailbox), another
replica's large batch (its NOTIFY carries only the last seq), a status event (the task may
have ended), or the periodic re-check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession

from board_api import wire
from kernel.statuses import TERMINAL, UNFINISHED
from store import fastpath, tasks
from store.db import Database
from store.events import rows_after
from store.hub import Batch, Subscription
from store.models import Task

PAGE = 500
WINDOW = 2000  # frames kept per feed; older ones are re-read from the database
# Events handed to a feed and not yet framed: past this its mailbox is dropped and the feed
# reads the log instead, so a feed that falls behind costs the database, not memory.
INBOX = 2000
MAX_READS = 4  # reads of the log at once, all feeds together (a read takes ~1 ms)
RECHECK_SECONDS = 5.0  # a lost cross-replica notification costs at most this much delay
log = logging.getLogger(__name__)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# What an SSE route declares in the OpenAPI spec (its response is not a JSON model).
SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}
}


def sse(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE frame; `data` is compact JSON, so it is a single line."""
    head = (f"id: {id}\n" if id is not None else "") + (f"event: {event}\n" if event else "")
    return f"{head}data: {data}\n\n".encode()


def event_frame(row: dict[str, Any]) -> bytes:
    """An event row (store.events.rows_after) as its SSE frame."""
    return _frame(row["task_id"], row["seq"], row["kind"], row["data"], row["attempt"], row["created_at"])


def _frame(task_id: str, seq: int, kind: str, data: Any, attempt: int, created_at: Any) -> bytes:
    """The frame of sdk.schemas.EventOut, byte for byte (tests/board_api/test_streams.py):
    pydantic's own encoder on a dict of its fields in order, a third of the cost of building
    the model to dump it, with the model's NaN and infinity as null (JSON has neither). The
    values are typed already (the database's, or those just written)."""
    body = to_json(
        {
            "task_id": task_id,
            "seq": seq,
            "kind": kind,
            "data": data,
            "attempt": attempt,
            "created_at": created_at,
        },
        inf_nan_mode="null",
    )
    head = b"id: %d\nevent: %s\n" % (seq, kind.encode()) if kind else b"id: %d\n" % seq
    return head + b"data: " + body + b"\n\n"


_TASKS = Task.__table__


def _unfinished(data: Any) -> bool:
    """Whether a status event's data says the task moved to an unfinished status (a claim's
    `running`): then it has not ended there, and the feed needs no read to know it. Status
    events are the control plane's own (a worker may not write one)."""
    return isinstance(data, dict) and cast(dict[str, Any], data).get("status") in UNFINISHED


def _look(events: list[dict[str, Any]], anyway: bool) -> bool:
    """Whether a read that found `events` looks for the task's end: not after a full page
    (there is more to read first); `anyway`, or when it found a status event or nothing."""
    return len(events) < PAGE and (anyway or not events or any(e["kind"] == "status" for e in events))


async def _ended(s: AsyncSession, task_id: str, seen: int) -> Task | None:
    """The task, if it has ended and its log has nothing after `seen`: the feed's end.
    One narrow read per wake-up; the whole task only once, at the end."""
    row = (
        await s.execute(sa.select(_TASKS.c.status, _TASKS.c.last_seq).where(_TASKS.c.id == task_id))
    ).first()
    if row is None or row.status not in TERMINAL or row.last_seq > seen:
        return None
    return await tasks.get_task(s, task_id)


@dataclass
class Feed:
    task_id: str
    last: int = 0  # highest seq read
    frames: list[tuple[int, bytes]] = field(
        default_factory=list[tuple[int, bytes]]
    )  # (seq, frame), ascending
    end: bytes | None = None  # the `end` frame, once the task finished and all is read
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    followers: int = 0
    pump: asyncio.Task[None] | None = None
    inbox: Subscription | None = None  # the batches handed to the pump, not yet framed
    closed: bool = False

    @property
    def first(self) -> int:
        return self.frames[0][0] if self.frames else self.last + 1


class Feeds:
    def __init__(
        self, db: Database, max_reads: int = MAX_READS, *, window: int = WINDOW, inbox: int = INBOX
    ) -> None:
        self.db = db
        self.window, self.inbox = window, inbox
        self.feeds: dict[str, Feed] = {}
        # The feeds' reads of the log (a pump's read-back, a follower's gap) at once: below
        # the pool's size. A NOTIFY from another replica wakes every feed of its tasks, and
        # unbounded, each read took a connection: past the pool's 10 SQLAlchemy opened
        # overflow connections and closed them on return, 1,573 PostgreSQL sessions in one
        # 25 s `make bench-stream` (a backend forked for each), and a crowd of followers
        # arriving together could drain the pool.
        self.reads = asyncio.Semaphore(max_reads)
        # Events the pumps framed as handed to them, and as read back from the log.
        self.handed = 0
        self.read_back = 0

    @contextlib.asynccontextmanager
    async def follow(self, task_id: str) -> AsyncGenerator[Feed]:
        feed = self.feeds.get(task_id)
        if feed is None:
            # The pump starts from seq 0, so followers of a task with a short log (most of
            # them) are served from memory from the first event on.
            feed = self.feeds[task_id] = Feed(task_id)
            feed.pump = asyncio.create_task(self._pump(feed))
        feed.followers += 1
        try:
            yield feed
        finally:
            feed.followers -= 1
            if feed.followers == 0:
                # Not cancelled mid-query (that can strand a pooled connection): told to stop,
                # and woken so it does so now.
                self.feeds.pop(task_id, None)
                feed.closed = True
                self.db.hub.publish(f"task:{task_id}")

    async def _pump(self, feed: Feed) -> None:
        # Subscribed before the first read: a batch committed meanwhile is in that read or in
        # the mailbox (or both; what the feed has already is skipped).
        with self.db.hub.subscribe(f"task:{feed.task_id}", maxsize=self.inbox) as inbox:
            feed.inbox = inbox
            stale = True  # the log may hold events the feed has not: read it
            # Whether the next read also looks for the task's end whatever it finds: at the
            # start, on the periodic re-check and after an overflow. A read for news (above
            # all another replica's NOTIFY, one per batch) looks only when it finds a status
            # event or nothing new: a task ends with its `status` event (store.statemachine).
            anyway = True
            while feed.end is None and not feed.closed:
                if stale:
                    try:
                        stale = await self._read_back(feed, anyway)  # still stale after a full page
                    except Exception:  # the database is away: followers keep their place
                        log.warning("feed of task %s: read failed; retrying", feed.task_id, exc_info=True)
                        await inbox.get(1.0)
                        continue
                    if stale or feed.end is not None:
                        continue
                payloads = await inbox.get(RECHECK_SECONDS)
                before = feed.last
                # None: the mailbox overflowed (or the hub lost NOTIFYs); []: the re-check.
                stale = not payloads or self._take(feed, payloads)
                anyway = not payloads
                if feed.last > before:
                    async with feed.changed:
                        feed.changed.notify_all()

    def _take(self, feed: Feed, payloads: list[str]) -> bool:
        """Frame the handed batches that continue the feed; True when the log must be read
        (a gap, a status event, news from elsewhere)."""
        for p in payloads:
            if isinstance(p, Batch):
                if p.first > feed.last + 1:
                    return True  # a gap: the read gets this batch too
                rows = p.rows[max(0, feed.last + 1 - p.first) :]  # without what the feed has
                if rows:
                    self._add(feed, [(r[1], _frame(*r)) for r in rows])
                    self.handed += len(rows)
                if any(r[2] == "status" and not _unfinished(r[3]) for r in rows):
                    return True  # the task may have ended: the read checks (see _ended)
            elif not (p.isdigit() and int(p) <= feed.last):
                return True  # another replica's events, or an unknown wake-up
        return False

    def _add(self, feed: Feed, frames: list[tuple[int, bytes]]) -> None:
        feed.frames.extend(frames)
        feed.last = frames[-1][0]
        del feed.frames[: -self.window]

    async def _read_back(self, feed: Feed, anyway: bool = True) -> bool:
        """Read the log after the feed's last seq into it, and its end once all is read (when
        `anyway`, or the read found a status event or nothing new); True when a whole page
        came back (there may be more)."""
        async with self.reads:
            if self.db.fast_reads:
                events, task = await self._read_fast(feed, anyway)
            else:
                async with self.db.read() as s:  # one session for both reads
                    events = await rows_after(s, feed.task_id, feed.last, PAGE)
                    last = events[-1]["seq"] if events else feed.last
                    task = await _ended(s, feed.task_id, last) if _look(events, anyway) else None
        if events:
            self._add(feed, [(e["seq"], event_frame(e)) for e in events])
            self.read_back += len(events)
        if task is not None:
            feed.end = sse(wire.task_out(task).model_dump_json(), "end")
        if events or feed.end is not None:
            async with feed.changed:
                feed.changed.notify_all()
        return len(events) == PAGE

    async def _read_fast(self, feed: Feed, anyway: bool) -> tuple[list[dict[str, Any]], Task | None]:
        """`_read_back`'s reads on PostgreSQL, without SQLAlchemy until the end is found: a
        feed's first read comes as its follower opens the stream, which a client does right
        after creating the task, while this loop also runs that task's claim. When the end
        will be looked for `anyway`, the task's row is read in the same round trip."""
        events, progress = await fastpath.log_after(self.db, feed.task_id, feed.last, PAGE, progress=anyway)
        if not _look(events, anyway):
            return events, None
        if progress is None and not anyway:
            progress = await fastpath.task_progress(self.db, feed.task_id)
        last = events[-1]["seq"] if events else feed.last
        if progress is None or progress[0] not in TERMINAL or progress[1] > last:
            return events, None
        async with self.db.read() as s:  # the whole task, once, for its `end` frame
            return events, await tasks.get_task(s, feed.task_id)

    def close(self) -> None:
        """Stop every pump (server shutdown): each ends at its next wake-up, now."""
        for feed in list(self.feeds.values()):
            feed.closed = True
            self.db.hub.publish(f"task:{feed.task_id}")
        self.feeds.clear()

    async def _read(self, task_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        async with self.db.read() as s:
            return await rows_after(s, task_id, after, limit)

    async def frames_after(self, feed: Feed, seen: int, keepalive: float) -> AsyncIterator[bytes]:
        """Every frame after `seen`, then `end`; a bare comment when idle for `keepalive`."""
        while True:
            if seen + 1 < feed.first and seen < feed.last:
                # Behind the window: read the gap from the log (resume, or a slow follower).
                # Shielded: a follower that disconnects mid-read still returns its connection.
                async with self.reads:
                    events = await asyncio.shield(
                        self._read(feed.task_id, seen, min(PAGE, feed.first - 1 - seen))
                    )
                # The log has no gaps, so an empty read means the window starts right after.
                seen = events[-1]["seq"] if events else max(seen, feed.first - 1)
                if events:  # one write for the lot: each chunk costs a trip through the ASGI stack
                    yield b"".join(event_frame(e) for e in events)
                continue
            if feed.last > seen:
                # The window is contiguous (seq = first + index), so the tail is a slice.
                fresh = feed.frames[seen + 1 - feed.first :]
                seen = feed.last
                yield b"".join(frame for _, frame in fresh)
                continue
            if feed.end is not None:
                yield feed.end
                return
            idle = False
            async with feed.changed:
                if feed.last <= seen and feed.end is None:
                    # asyncio.timeout, not wait_for: wait_for runs the wait in another task,
                    # and a cancelled follower then leaves the condition's lock in a bad state.
                    try:
                        async with asyncio.timeout(keepalive):
                            await feed.changed.wait()
                    except TimeoutError:
                        idle = True
            if idle:  # yielded outside the lock: a slow client must not stall the pump
                yield b": ping\n\n"
