"""Group commit for SQLite's fast writer: the transactions that finish in one turn of the
event loop share one COMMIT.

A commit in WAL mode writes every page the transaction changed to the WAL, a system call
per page: a task's creation touches ~15 pages (the task, its 8 indexes, its first event,
the audit row and its 3 indexes) and its commit cost ~125 µs of CPU, a sixth of the
control plane's time per task (profiled under issue #15). Transactions that commit
together write the pages they share once.

How: each `Database.fast_tx` runs as a SAVEPOINT inside the writer's open transaction and
releases it; instead of committing, it joins the current group and waits. The group's
commit is a task that takes the write lock after the transactions already waiting for it,
so every request that was ready in the same loop turn joins before it runs. A caller learns
of its commit only after the COMMIT returned: durability is unchanged, each request is
still answered after its writes are on disk (in the WAL).

A failed transaction rolls back to its savepoint, which leaves the others of its group as
they were. Should SQLite have rolled back the whole transaction instead (it may, on a full
disk or an I/O error), every member of the group fails: none of them was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from store.sqlite_inline import InlineConnection

__all__ = ["GroupCommit"]


class GroupCommit:
    """The writer's pending group; every method runs on the event loop."""

    def __init__(self, lock: asyncio.Lock, publish: Callable[[str, str], None]) -> None:
        self._lock = lock
        self._publish = publish
        self._conn: InlineConnection | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._notes: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None
        self.commits = 0  # COMMITs run (a test checks that a group shares one)
        self.members = 0  # transactions committed through them

    @property
    def idle(self) -> bool:
        """No transaction is waiting for a commit."""
        return not self._waiters

    def join(self, conn: InlineConnection, notes: list[tuple[str, str]]) -> asyncio.Future[None]:
        """Call under the write lock, after RELEASE: a future done once this transaction's
        group has committed (or failing with why it did not). Its `notes` are published on
        the commit, here, so a caller cancelled while it waits does not lose them."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._conn = conn
        self._waiters.append(fut)
        self._notes.extend(notes)
        if self._task is None:
            self._task = loop.create_task(self._commit_soon())
        return fut

    async def _commit_soon(self) -> None:
        try:
            async with self._lock:  # queued behind the transactions already waiting
                self.flush()
        finally:
            self._task = None

    def flush(self) -> None:
        """Commit the pending group now; the caller holds the write lock."""
        waiters, self._waiters = self._waiters, []
        notes, self._notes = self._notes, []
        if self._conn is None:
            return
        if not waiters:
            # Only failed members since the last commit (rolled back to their savepoints):
            # end the empty transaction, which holds SQLite's write lock.
            self._conn.end_empty()
            return
        try:
            self._conn.commit_now()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self._conn.rollback_now()
            _fail(waiters, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.commits += 1
        self.members += len(waiters)
        for topic, payload in notes:
            self._publish(topic, payload)
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def abort(self, exc: BaseException) -> None:
        """The writer's transaction is gone (SQLite rolled it all back): the group with it."""
        waiters, self._waiters = self._waiters, []
        self._notes = []
        _fail(waiters, exc)


def _fail(waiters: list[asyncio.Future[None]], exc: BaseException) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_exception(_lost(exc))


def _lost(exc: BaseException) -> Exception:
    """One error per waiter (an exception object raised in several tasks gets its traceback
    rewritten by each): the same type when it can be rebuilt, else a RuntimeError."""
    try:
        args: Any = exc.args
        out = type(exc)(*args)
    except Exception:
        return RuntimeError(f"the group commit failed: {exc!r}")
    return out if isinstance(out, Exception) else RuntimeError(str(exc))
