"""Live notification of changes to followers: in-process, plus PostgreSQL LISTEN/NOTIFY.

A notification says only "topic X changed" (with a small payload); followers re-read the
durable state (the event log, the task row) to learn what changed. So a lost or duplicated
wake-up is harmless, and the database stays the single source of truth. One shortcut: a
`Batch` payload also carries the committed events themselves to the followers, which may
use them instead of reading them back (board_api/feeds.py), and read back anyway whenever
anything is missing. In this process the rows are handed as they are; to other replicas
they ride in the NOTIFY, as JSON, when they are small (`ROWS_IN_NOTIFY`): with two replicas
a follower's replica is often not its task's writer, and reading every batch back from the
log was a fifth of a replica's time and most of PostgreSQL's reads (`make bench-stream`).

Topics: `task:<id>` (new events; payload = the task's new last seq: a feed that has it
already skips the wake-up), `queue:<name>` (a task became claimable), `board` (a task
changed status; payload = task id), `tasks` (any task changed; used by list followers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import defaultdict
from collections.abc import Generator, Sequence
from datetime import datetime
from typing import Any

from pydantic_core import from_json, to_json

from store import peers as peering
from store.peers import Peers

log = logging.getLogger(__name__)

CHANNEL = "meta_agent"
# A batch's rows go in its NOTIFY when their JSON is at most this many bytes (a payload
# holds 8000): a typical worker batch of a few deltas is a few hundred. Larger ones are
# read back from the log by the other replicas, as all were before.
ROWS_IN_NOTIFY = 3000

# An event as store.fastpath.insert_events writes it: (task_id, seq, kind, data, attempt,
# created_at); from another replica's NOTIFY, created_at is the ISO text JSON gave it, which
# frames (board_api/feeds.py) exactly as the datetime does.
EventRow = tuple[str, int, str, Any, int, datetime | str]


class Batch(str):
    """The payload of a `task:<id>` note for events just appended: the task's new last seq,
    as text, which is all a NOTIFY carries to other replicas; and, within this process, the
    rows themselves, so that the task's feed frames them without reading them back.

    A str, so it travels like any payload: queued on the Tx, encoded into the NOTIFY, and
    published only once the transaction has committed (a rolled-back batch is never seen)."""

    rows: Sequence[EventRow]  # consecutive seqs, ascending

    def __new__(cls, rows: Sequence[EventRow]) -> Batch:
        self = super().__new__(cls, str(rows[-1][1]))
        self.rows = rows
        return self

    @property
    def first(self) -> int:
        return self.rows[0][1]

    def wire(self) -> str:
        """The rows as a NOTIFY carries them: JSON `[[seq, kind, data, attempt, created_at],
        ...]` (the topic names the task); NaN and infinities as null, as the frames have them."""
        return to_json([r[1:] for r in self.rows], inf_nan_mode="null").decode()

    @classmethod
    def from_wire(cls, task_id: str, last: str, rows: str) -> Batch | None:
        """The batch a NOTIFY carried, or None when it is not one this hub wrote (the feed
        then reads the log, as for a bare seq)."""
        try:
            items = from_json(rows)
            out: list[EventRow] = [
                (task_id, int(seq), str(kind), data, int(attempt), str(created))
                for seq, kind, data, attempt, created in items
            ]
        except (ValueError, TypeError):
            return None
        seqs = [r[1] for r in out]
        if not out or str(seqs[-1]) != last or seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            return None
        return cls(out)


def weight(payload: str) -> int:
    """What a payload costs a mailbox: a batch its events, anything else 1."""
    return len(payload.rows) if isinstance(payload, Batch) else 1


class Subscription:
    """A bounded mailbox of payloads for one follower (board stream, task feed).

    When the follower falls too far behind, the mailbox is cleared and `overflowed` is set,
    so the follower resynchronises from the database instead of the hub buffering forever.
    `maxsize` bounds the sum of the payloads' `weight`s: a batch of 100 events counts 100.
    """

    def __init__(self, hub: Hub, topic: str, maxsize: int) -> None:
        self.hub, self.topic, self.maxsize = hub, topic, maxsize
        self.items: list[str] = []
        self.size = 0  # the items' weight
        self.overflowed = False
        self._event = asyncio.Event()

    def push(self, payload: str) -> None:
        """Queue `payload` (the hub calls this); a full mailbox turns into a resync."""
        w = weight(payload)
        if self.size + w > self.maxsize:
            self.items.clear()
            self.size = 0
            self.overflowed = True
        else:
            self.items.append(payload)
            self.size += w
        self._event.set()

    def resync(self) -> None:
        """Drop what is queued and make the follower resynchronise from the database."""
        self.items.clear()
        self.size = 0
        self.overflowed = True
        self._event.set()

    async def get(self, timeout: float) -> list[str] | None:
        """Payloads received since the last call; [] on timeout; None after an overflow."""
        if not self.items and not self.overflowed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # see Hub.wait: not `wait_for`
                    await self._event.wait()
        self._event.clear()
        if self.overflowed:
            self.overflowed = False
            self.items.clear()
            self.size = 0
            return None
        items, self.items, self.size = self.items, [], 0
        return items


class Hub:
    """Version counters and waiters per topic, living on one event loop."""

    def __init__(self) -> None:
        # Names this hub in the NOTIFYs of its own transactions: they were published here
        # at their commit already, and LISTEN brings them back (see listen_postgres).
        self.origin = secrets.token_hex(8)
        # Whether its commits must NOTIFY: another replica listens (store.peers).
        self.peers = Peers()
        self._versions: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        # The control plane's own followers (the schedule ticker, webhook callbacks): not
        # counted as the streams and long-polls people and workers hold open.
        self._internal: set[object] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def version(self, topic: str) -> int:
        return self._versions[topic]

    def publish(self, topic: str, payload: str = "") -> None:
        """Wake every waiter of `topic`. Safe to call from any thread."""
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._publish, topic, payload)
                return
        self._publish(topic, payload)

    def _publish(self, topic: str, payload: str) -> None:
        self._versions[topic] += 1
        waiters = self._waiters.pop(topic, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        for sub in self._subs.get(topic, ()):
            sub.push(payload)

    def publish_all(self) -> None:
        """`wake_all` from any thread."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self.wake_all)
        else:
            self.wake_all()

    def wake_all(self) -> None:
        """Wake every follower and make every subscription resynchronise."""
        for topic in list(self._waiters):
            self._publish(topic, "")
        for subs in list(self._subs.values()):
            for sub in subs:
                sub.resync()

    async def wait(
        self,
        topic: str,
        since: int,
        timeout: float,
        *,
        internal: bool = False,
        wake: asyncio.Future[Any] | None = None,
    ) -> bool:
        """Wait until `topic` moves past version `since`, or `wake` is done. True if either
        happened, False on timeout."""
        if self._versions[topic] != since or (wake is not None and wake.done()):
            return True
        if timeout <= 0:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if wake is not None:
            wake.add_done_callback(lambda _: fut.done() or fut.set_result(None))
        self._waiters[topic].add(fut)
        if internal:
            self._internal.add(fut)
        try:
            # `asyncio.timeout`, not `wait_for`: on 3.11 `wait_for` can swallow a cancel that
            # lands as the future completes, and a cancelled follower then never stops.
            async with asyncio.timeout(timeout):
                await fut
            return True
        except TimeoutError:
            return self._versions[topic] != since
        finally:
            self._internal.discard(fut)
            waiters = self._waiters.get(topic)
            if waiters is not None:
                waiters.discard(fut)
                if not waiters:
                    self._waiters.pop(topic, None)

    @contextlib.contextmanager
    def subscribe(
        self, topic: str, maxsize: int = 1000, *, internal: bool = False
    ) -> Generator[Subscription]:
        sub = Subscription(self, topic, maxsize)
        self._subs[topic].add(sub)
        if internal:
            self._internal.add(sub)
        try:
            yield sub
        finally:
            self._internal.discard(sub)
            self._subs[topic].discard(sub)
            if not self._subs[topic]:
                self._subs.pop(topic, None)

    def follower_count(self, prefix: str = "", *, internal: bool = False) -> int:
        """Open streams and long-polls on topics starting with `prefix`; the control plane's
        own followers too with `internal`."""
        skip: set[object] = set() if internal else self._internal
        n = sum(len(w - skip) for t, w in self._waiters.items() if t.startswith(prefix))
        return n + sum(len(s - skip) for t, s in self._subs.items() if t.startswith(prefix))


# The first note of a payload from a hub: its origin (a replica of an older version
# publishes it as a note of a topic nobody follows).
ORIGIN = "!origin"


def encode(notes: list[tuple[str, str]], origin: str = "") -> list[str]:
    """Pack notes into NOTIFY payloads under PostgreSQL's 8000-byte limit, each starting
    with the sending hub's `origin` when given. A note is `topic<TAB>payload`, and a small
    batch's rows follow after another TAB (compact JSON has no raw tab or newline)."""
    out: list[str] = []
    head = [f"{ORIGIN}\t{origin}"] if origin else []
    cur: list[str] = list(head)
    size = sum(len(line) + 1 for line in head)
    for topic, payload in notes:
        line = f"{topic}\t{payload}"
        if isinstance(payload, Batch):
            rows = payload.wire()
            if len(rows) <= ROWS_IN_NOTIFY and len(rows.encode()) <= ROWS_IN_NOTIFY:
                line += "\t" + rows
        n = len(line.encode()) + 1  # the limit is in bytes; rows may hold any text
        if len(cur) > len(head) and size + n > 7900:
            out.append("\n".join(cur))
            cur, size = list(head), sum(len(line) + 1 for line in head)
        cur.append(line)
        size += n
    if len(cur) > len(head):
        out.append("\n".join(cur))
    return out


def decode(payload: str) -> list[tuple[str, str]]:
    """The notes of a NOTIFY payload; a batch that came with its rows as a `Batch`."""
    notes: list[tuple[str, str]] = []
    for line in payload.split("\n"):
        topic, _, data = line.partition("\t")
        if not topic:
            continue
        last, tab, rows = data.partition("\t")
        if tab and topic.startswith("task:"):
            notes.append((topic, Batch.from_wire(topic[5:], last, rows) or last))
        else:
            notes.append((topic, data))
    return notes


_closing: set[asyncio.Task[Any]] = set()  # strong references until each close finishes


def _close_when_connected(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        task = asyncio.ensure_future(fut.result().close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


async def listen_postgres(hub: Hub, dsn: str, ready: asyncio.Event | None = None) -> None:
    """Relay NOTIFYs from other replicas into `hub`, reconnecting forever (the hub's own
    come back too, and are skipped: each woke a parked claim a second time, for nothing).
    Says hello to the other replicas every `store.peers.HELLO_EVERY` seconds, and tells
    `hub.peers` what it hears from them.

    After a reconnect every topic is bumped once ("*" wake-up), because notifications sent
    while disconnected are lost; followers then re-read from the database.
    """
    import psycopg

    backoff = 0.2
    first = True
    hello = f"{ORIGIN}\t{hub.origin}"
    while True:
        connecting = asyncio.ensure_future(psycopg.AsyncConnection.connect(dsn, autocommit=True))
        try:
            # Shielded: cancelled mid-connect (server shutdown), the connection still gets
            # closed once it exists, instead of being garbage-collected open.
            conn = await asyncio.shield(connecting)
        except asyncio.CancelledError:
            connecting.add_done_callback(_close_when_connected)
            raise
        except (psycopg.OperationalError, OSError) as exc:
            log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            hub.peers.listening()
            backoff = 0.2
            missed, first = not first, False
            while True:
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, hello))
                if hub.peers.said_hello() or hub.peers.warmed() or missed:
                    hub.wake_all()  # notes may have been missed: followers read again
                missed = False
                if ready is not None:
                    ready.set()
                async for n in conn.notifies(timeout=peering.HELLO_EVERY):
                    notes = decode(n.payload)
                    if notes and notes[0][0] == ORIGIN:
                        if notes[0][1] == hub.origin:
                            continue  # this hub's own: published at its commit
                        notes = notes[1:]
                    if hub.peers.heard():
                        # Worth knowing: from now on every commit also NOTIFYs (one more
                        # statement; an exchange's rows are read before its commit). A server
                        # left running on a re-created database passes for one too.
                        log.info("another replica listens on this database: commits notify it")
                    for topic, data in notes:
                        hub.publish(topic, data)
        except (psycopg.OperationalError, OSError) as exc:
            log.warning("LISTEN connection lost (%s); reconnecting", exc)
        finally:
            hub.peers.deaf()
            with contextlib.suppress(Exception):
                await conn.close()
