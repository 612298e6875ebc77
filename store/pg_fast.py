"""The PostgreSQL connections of `Database.fast_tx()` and `fast_read()`.

The hot routes' statements (store.fastpath) are plain SQL; through SQLAlchemy each
transaction still paid for an AsyncSession, a pool checkout with its events, and greenlet
hops around every driver call, several times the Python the statements themselves need.
Here a transaction is a connection taken from a small pool of our own, the statements run
on it directly, and a commit.

Round trips: each connection stays in libpq's pipeline mode for its whole life, driven
through libpq's calls by store.pg_lean (psycopg's own async pipeline cost twice the client
CPU per statement). A statement whose answer nobody reads (an INSERT) is queued; a statement
whose rows are read sends everything queued before it with a Flush and waits for its own answer;
the `pg_notify`s go with the Sync that ends the transaction, which waits for every answer.
So a task's creation (read the agent, insert the task with its event and the audit row,
notify, commit) is two round trips instead of six, and an error in a queued statement is
raised at the next read or at the commit, still inside the block. (Its writes and the
notify are even one statement: store.fastpath.insert_task holds them for the commit.)

No BEGIN and no COMMIT: in the extended protocol everything between two Syncs runs in one
implicit transaction, which the Sync commits (durably: it answers after the commit) or, after
an error, rolls back; a failure in the block queues a ROLLBACK before its Sync. Two
statements fewer per transaction. (psycopg's own pipeline, entered per transaction outside
autocommit, sends `BEGIN` alone and syncs again on leaving: two round trips more.)

The pool is beside SQLAlchemy's, not part of it: it holds at most `size` connections,
opened on first use; a caller waits up to `timeout` for a free one and then gets the same
503 `database_busy` the engine's pool gives. A connection is reused only when its
transaction ended cleanly (status IDLE after commit or rollback); one that failed is
closed, and so are the idle ones when a connection turns out dead (a server restart kills
them all: better one reconnect each than one failed request each, which is also what
SQLAlchemy's pool does on a disconnect). A statement run `prepare_threshold` times on a
connection is prepared (store.pg_lean): 2 here (psycopg's default is 5), so the few hot
statements are parsed and planned once per connection almost at once, while a statement
run only once (a multi-row INSERT of an unusual batch size) is not prepared for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads
from pydantic_core import from_json, to_json

from kernel import errors
from store.pg_lean import Lean

__all__ = ["FastPool"]

_NOTIFY = b"SELECT pg_notify($1, $2)"


class FastPool:
    def __init__(
        self, connect_args: Mapping[str, Any], *, size: int, timeout: float, prepare_threshold: int = 2
    ) -> None:
        self._args = connect_args
        self.size = size
        self.timeout = timeout
        self.prepare_threshold = prepare_threshold
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Lean] = []
        self._closed = False

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncGenerator[Lean]:
        """A connection in a transaction, committed when the block ends normally (waiting
        for every statement's answer) and rolled back when it raises. psycopg's
        OperationalError, in the block or here, is raised as Unavailable."""
        with _unavailable_on_errors():
            conn = await self._acquire()
            reuse = False
            try:
                yield conn
                # The Sync commits the implicit transaction (see the module's docstring) and
                # raises the first error of the batch, if any (then nothing was committed).
                await conn.sync()
                reuse = True
            finally:
                if not reuse:
                    reuse = await self._rolled_back(conn)
                await self._release(conn, reuse=reuse)

    async def read(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        """Each statement's rows, in ONE round trip: all are sent with the Sync that ends
        their implicit transaction, and their rows read once it has answered (a `fetchall`
        before the Sync would be a turn of its own, the Sync another). For reads only: an
        error is raised and nothing is kept of the batch."""
        with _unavailable_on_errors():
            conn = await self._acquire()
            reuse = False
            try:
                # Our own statement texts (store.fastpath's), never built from input.
                slots = [conn.send(sql, params) for sql, params in statements]
                await conn.sync()
                rows = [await conn.take(slot) for slot in slots]
                reuse = True
                return rows
            finally:
                if not reuse:
                    reuse = await self._rolled_back(conn)
                await self._release(conn, reuse=reuse)

    async def notify(
        self, conn: Lean, channel: str, payloads: list[str], held: tuple[bytes, list[Any]] | None = None
    ) -> None:
        """Queue a `pg_notify` of each payload on `channel`: sent with the COMMIT, and so
        delivered by PostgreSQL if that commit succeeds, and only then. `held` (store.db.Tx.
        held: a WITH of writes, `$n` placeholders) is the same statement's WITH: one
        statement's Python and syscalls for both."""
        if held is None:
            for p in payloads:
                await conn.run(_NOTIFY, (channel, p))
            return
        ctes, params = held
        n = len(params)
        # No payload: the writes alone (a WITH needs a main query).
        main = (
            f" SELECT pg_notify(${n + 1}, p) FROM unnest(${n + 2}::text[]) AS p" if payloads else " SELECT 1"
        )
        await conn.run(ctes + main.encode(), [*params, channel, payloads] if payloads else params)

    async def _acquire(self) -> Lean:
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
                await self._close(conn)
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    async def _connect(self) -> Lean:
        conn = await psycopg.AsyncConnection.connect(**self._args, autocommit=True)
        try:
            # pydantic's JSON parser and encoder, as on SQLite (store.fastpath): json.loads
            # took ~3 µs a value, and a claim reads a task's 7 JSON columns and its agent's
            # ~15; from_json takes a tenth of that, for the same values.
            set_json_loads(from_json, conn)
            set_json_dumps(to_json, conn)
            return Lean(conn, self.prepare_threshold)
        except BaseException:
            await conn.close()
            raise

    async def _rolled_back(self, conn: Lean) -> bool:
        """Roll back after a failure; whether the connection is fit to be reused (one that
        is not is closed by the caller, after looking at whether it was `broken`).

        Never a Sync before the ROLLBACK: a Sync commits what ran so far. A ROLLBACK after
        an error is skipped by the server (the pipeline is aborted until the Sync) and the
        Sync then ends the failed transaction; either way nothing is committed."""
        if conn.closed:
            return False
        try:
            # The pending error (the block's own, already on its way up) is ignored there.
            await conn.rollback()
        except BaseException:
            # Cancelled again meanwhile, or the connection lost: its state is unknown. The
            # exception that made us roll back is still on its way up (we are in a
            # `finally`); this one must not replace it.
            return False
        return not conn.broken and conn.idle

    async def _release(self, conn: Lean, *, reuse: bool) -> None:
        try:
            if reuse and not self._closed and not conn.broken and conn.idle:
                self._idle.append(conn)
                return
            if conn.broken:  # the server went away: the idle ones are likely dead too
                await self._close_idle()
            await self._close(conn)  # broken, or in an unknown state
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Close the idle connections now, and each one in use when it comes back."""
        self._closed = True
        await self._close_idle()

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._close(conn)

    async def _close(self, conn: Lean) -> None:
        # psycopg's close() awaits nothing (it finishes the libpq connection), so it runs to
        # the end even in a task being cancelled.
        await conn.conn.close()


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
