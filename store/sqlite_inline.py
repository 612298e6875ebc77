"""An aiosqlite-shaped connection that runs sqlite3 calls inline on the event loop.

aiosqlite runs every call (execute, fetch, description, close, ...) on a helper thread, so
a short transaction costs dozens of thread hops, each far slower than the SQLite work
itself (a WAL commit with synchronous=NORMAL takes ~10 µs). The control plane is the only
writer of its SQLite file and serialises writers in-process, so a statement never waits
on a lock for long, and running it inline is both faster and simpler. SQLAlchemy's
aiosqlite dialect drives this object through `create_async_engine(async_creator=...)`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Checkpointer", "FastWriter", "connect"]

log = logging.getLogger(__name__)


class _Cursor:
    __slots__ = ("_cur", "_owner")

    def __init__(self, cur: sqlite3.Cursor, owner: InlineConnection) -> None:
        self._cur = cur
        self._owner = owner

    async def __aenter__(self) -> _Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cur.close()

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cur.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cur.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        self._owner.begin()
        self._cur.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, seq: Any) -> _Cursor:
        self._owner.begin()
        self._cur.executemany(sql, seq)
        return self

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cur.fetchmany(size if size is not None else self._cur.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    async def close(self) -> None:
        self._cur.close()


class _Now:
    """Stands in for aiosqlite's request queue: runs the function at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # handed to the awaiting caller, as aiosqlite does
            future.set_exception(exc)


class InlineConnection:
    def __init__(self, conn: sqlite3.Connection, begin: str) -> None:
        self._conn = conn
        self._begin = begin
        # aiosqlite's "is open" marker, checked by SQLAlchemy; None once closed.
        self._connection: sqlite3.Connection | None = conn
        self._tx = _Now()
        self.committed: Callable[[], None] | None = None  # told of every commit (Checkpointer)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def begin(self) -> None:
        """Open the transaction the first statement after a commit or rollback runs in.

        The driver is in autocommit mode (`isolation_level=None`), so the transaction is
        ours to begin, with the statement we choose (`BEGIN IMMEDIATE` for the writer). Doing
        it here, not in SQLAlchemy's `begin` event, keeps the engine free of connection
        events: with one registered, every statement pays for looking up its listeners."""
        if not self._conn.in_transaction:
            self._conn.execute(self._begin)

    def cursor(self) -> _Cursor:
        return _Cursor(self._conn.cursor(), self)

    def run(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        """Execute in the current transaction (store.fastpath: no async wrapper needed)."""
        self.begin()
        return self._conn.execute(sql, parameters)

    def run_many(self, sql: str, seq: Any) -> None:
        self.begin()
        self._conn.executemany(sql, seq)

    async def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        self.begin()
        return _Cursor(self._conn.execute(sql, parameters), self)

    async def commit(self) -> None:
        self.commit_now()

    async def rollback(self) -> None:
        self._conn.rollback()

    def commit_now(self) -> None:
        self._conn.commit()
        if self.committed is not None:
            self.committed()

    def rollback_now(self) -> None:
        self._conn.rollback()

    # One fast_tx inside the writer's open transaction (store.group_commit).
    def savepoint(self) -> None:
        self.begin()
        self._conn.execute("SAVEPOINT fast_tx")

    def release(self) -> None:
        self._conn.execute("RELEASE fast_tx")

    def end_empty(self) -> None:
        """End a transaction left with nothing to keep (its savepoints all rolled back)."""
        if self._conn.in_transaction:
            self._conn.rollback()

    def rollback_to(self) -> bool:
        """Undo this fast_tx's writes only; False when SQLite had already rolled back the
        whole transaction (a full disk, an I/O error), the group's writes with it."""
        if not self._conn.in_transaction:
            return False
        try:
            self._conn.execute("ROLLBACK TO fast_tx")
            self._conn.execute("RELEASE fast_tx")
        except sqlite3.Error:
            self._conn.rollback()
            return False
        return True

    async def close(self) -> None:
        self._conn.close()
        self._connection = None

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    def stop(self) -> None:
        self._conn.close()


class Checkpointer:
    """Copies the WAL back into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages, so
    one commit in a few hundred waits for the file's writes and fsync (milliseconds, up to
    100 ms on a busy disk) while holding the event loop. The writer connection turns it off
    (`wal_autocheckpoint=0`) and this thread checkpoints instead, PASSIVE (it never waits for
    or blocks a reader or the writer), every `interval` seconds after a commit, or at once
    past `pages` WAL pages. Durability is unchanged: a commit is in the WAL either way.
    """

    def __init__(self, path: str, *, interval: float = 0.5, pages: int = 4000) -> None:
        self.path = path
        self.interval = interval
        self.pages = pages
        self._commits = 0  # since the last checkpoint; a lost increment only delays one
        self._dirty = threading.Event()  # a commit happened: the thread sleeps without it
        self._urgent = threading.Event()  # many commits, or stop: checkpoint now
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # (busy, WAL frames, frames checkpointed) of the last round, and how many ran.
        self.last: tuple[int, int, int] | None = None
        self.rounds = 0

    def committed(self) -> None:
        self._commits += 1
        if not self._dirty.is_set():
            self._dirty.set()
        if self._commits >= self.pages // 4 and not self._urgent.is_set():  # a commit writes a few pages
            self._urgent.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop:
                self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last checkpoint."""
        with self._lock:
            self._stop = True
            thread = self._thread
        self._dirty.set()
        self._urgent.set()
        if thread is not None:
            thread.join(10)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
        try:
            while not self._stop:
                self._dirty.wait()
                self._urgent.wait(self.interval)
                self._dirty.clear()
                self._urgent.clear()
                self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        if not self._commits:
            return
        self._commits = 0
        try:
            busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.last = (int(busy), int(frames), int(done))
            self.rounds += 1
        except sqlite3.Error as exc:  # busy, or the file went away: the next round retries
            log.debug("checkpoint of %s: %s", self.path, exc)


def connect(
    path: str, *, immediate: bool, timeout: float = 5.0, checkpointer: Checkpointer | None = None
) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine` opening `path` inline; its transactions
    begin with `BEGIN IMMEDIATE` (the writer: it takes the write lock up front, so it never
    fails to upgrade a read lock half-way) or a deferred `BEGIN` (readers). A writer given a
    `checkpointer` leaves checkpoints to it."""

    async def creator() -> InlineConnection:
        return _open(path, immediate=immediate, timeout=timeout, checkpointer=checkpointer)

    return creator


def _open(
    path: str, *, immediate: bool, timeout: float, checkpointer: Checkpointer | None
) -> InlineConnection:
    conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    conn.execute("PRAGMA foreign_keys=ON")
    # Temporary b-trees (an UPDATE's `IN (subquery)` list, RETURNING rows, a savepoint's
    # statement journal) in memory: in a file, SQLite opens one per statement, and a claim
    # cost ~100 µs instead of ~20 (measured; notes in docs/operations.md).
    conn.execute("PRAGMA temp_store=MEMORY")
    # Short: statements run inline on the event loop, and the only other writers are
    # brief (`db upgrade`, a CLI); a long wait would stall the loop.
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    inline = InlineConnection(conn, "BEGIN IMMEDIATE" if immediate else "BEGIN")
    if checkpointer is not None:
        conn.execute("PRAGMA wal_autocheckpoint=0")
        inline.committed = checkpointer.committed
        checkpointer.start()
    return inline


class FastWriter:
    """The writer connection of `Database.fast_tx()`: its own, beside SQLAlchemy's pool,
    opened on first use. The database's in-process write lock serialises it with the pool's
    writer, so the two never hold a write transaction at once."""

    def __init__(self, path: str, checkpointer: Checkpointer | None, *, timeout: float = 5.0) -> None:
        self.path = path
        self.checkpointer = checkpointer
        self.timeout = timeout
        self._conn: InlineConnection | None = None

    def connection(self) -> InlineConnection:
        if self._conn is None:
            self._conn = _open(
                self.path, immediate=True, timeout=self.timeout, checkpointer=self.checkpointer
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.stop()
            self._conn = None
