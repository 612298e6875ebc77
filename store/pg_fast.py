"""The psycopg 3 connections of `Database.fast_tx()` on PostgreSQL.

The hot routes' statements (store.fastpath) are plain SQL; through SQLAlchemy each
transaction still paid for an AsyncSession, a pool checkout with its events, and greenlet
hops around every driver call, several times the Python the statements themselves need.
Here a transaction is a connection taken from a small pool of our own, the statements run
on it directly, and `commit()`.

The pool is beside SQLAlchemy's, not part of it: it holds at most `size` connections,
opened on first use; a caller waits up to `timeout` for a free one and then gets the same
503 `database_busy` the engine's pool gives. A connection is reused only when its
transaction ended cleanly (status IDLE after commit or rollback); one that failed is
closed, and so are the idle ones when a connection turns out dead (a server restart kills
them all: better one reconnect each than one failed request each, which is also what
SQLAlchemy's pool does on a disconnect). psycopg prepares a statement run
`prepare_threshold` times on a connection: 2 here (psycopg's default is 5), so the few hot
statements are parsed and planned once per connection almost at once, while a statement
run only once (a multi-row INSERT of an unusual batch size) is not prepared for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import Any

import psycopg
from psycopg import pq

from kernel import errors

__all__ = ["FastPool"]

_IDLE = pq.TransactionStatus.IDLE


class FastPool:
    def __init__(
        self, connect_args: Mapping[str, Any], *, size: int, timeout: float, prepare_threshold: int = 2
    ) -> None:
        self._args = connect_args
        self.size = size
        self.timeout = timeout
        self.prepare_threshold = prepare_threshold
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._closed = False

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncGenerator[psycopg.AsyncConnection[Any]]:
        """A connection in a transaction (begun by its first statement), committed when the
        block ends normally and rolled back when it raises. psycopg's OperationalError, in
        the block or here, is raised as Unavailable."""
        with _unavailable_on_errors():
            conn = await self._acquire()
            reuse = False
            try:
                yield conn
                await conn.commit()
                reuse = True
            finally:
                if not reuse:
                    reuse = await _rolled_back(conn)
                await self._release(conn, reuse=reuse)

    async def notify_and_commit(
        self, conn: psycopg.AsyncConnection[Any], channel: str, payloads: list[str]
    ) -> None:
        """`pg_notify` each payload on `channel` and commit, in one round trip: one simple-query
        string (statements run in order, in the open transaction; a COMMIT that fails raises
        here and leaves no transaction, so nothing is delivered). The pool's own commit then
        finds the connection idle and sends nothing."""
        # Quoted by libpq (PQescapeLiteral: the connection's encoding and settings).
        quote = pq.Escaping(conn.pgconn).escape_literal
        name = quote(channel.encode())
        steps = [b"SELECT pg_notify(%b, %b); " % (name, quote(p.encode())) for p in payloads]
        await conn.execute(b"".join([*steps, b"COMMIT"]))

    async def _acquire(self) -> psycopg.AsyncConnection[Any]:
        if self._slots.locked():  # every connection in use: wait, bounded
            try:
                # `asyncio.timeout`, not `wait_for`: see store.hub.Hub.wait.
                async with asyncio.timeout(self.timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise errors.Unavailable(
                    "the database is busy (no free connection); retry shortly", code="database_busy"
                ) from None
        else:
            await self._slots.acquire()  # free: returns at once
        try:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
            conn = await psycopg.AsyncConnection.connect(
                **self._args, autocommit=False, prepare_threshold=self.prepare_threshold
            )
            return conn
        except BaseException:
            self._slots.release()
            raise

    async def _release(self, conn: psycopg.AsyncConnection[Any], *, reuse: bool) -> None:
        try:
            if reuse and not self._closed and not conn.closed and conn.info.transaction_status == _IDLE:
                self._idle.append(conn)
                return
            if conn.broken:  # the server went away: the idle ones are likely dead too
                await self._close_idle()
            await conn.close()  # broken, or in an unknown state
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Close the idle connections now, and each one in use when it comes back."""
        self._closed = True
        await self._close_idle()

    async def _close_idle(self) -> None:
        # psycopg's close() awaits nothing (it finishes the libpq connection), so it runs to
        # the end even in a task being cancelled.
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


async def _rolled_back(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Roll back after a failure; whether the connection is fit to be reused (one that is
    not is closed by the caller, after looking at whether it was `broken`)."""
    if conn.closed:
        return False
    try:
        await conn.rollback()
    except BaseException:
        # Broken, or cancelled again meanwhile: its state is unknown. The exception that made
        # us roll back is still on its way up (we are in a `finally`); this one must not
        # replace it.
        return False
    return True


@contextlib.contextmanager
def _unavailable_on_errors() -> Generator[None]:
    """psycopg's OperationalError (server gone, connection refused or lost, admin shutdown)
    as the store's retryable Unavailable, like db._unavailable_on_connection_errors."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise errors.Unavailable(
            "the database is unavailable; retry shortly", code="database_unavailable"
        ) from exc
