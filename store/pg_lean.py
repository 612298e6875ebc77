"""A psycopg connection driven through libpq's pipeline directly, for store.pg_fast.

psycopg's async pipeline costs more Python than the hot statements themselves: each
`execute` is a generator stepped by `wait_async`, which registers the socket with the event
loop, makes a future and removes it again for every step, even when the socket is ready at
once. A one-statement transaction took 145 µs of client CPU that way and 65 µs through
libpq's calls (`pgconn`) here, with a wait on the socket only when libpq has nothing to
give (measured on the dev box, 3,000 transactions each; wall time 320-387 → 239-257 µs).

What is kept of psycopg: the connection (connect, its libpq handle), its adapters (a
`Transformer` dumps the parameters and loads the rows with the same C code and the JSON
loaders pg_fast sets), its errors (`error_from_result`: the same exception classes), and its
query cancellation. The protocol is libpq's pipeline mode, as psycopg's own pipeline:
statements are sent at once and answered in order; a statement's rows are read when asked
for; the Sync ends the implicit transaction (see store.pg_fast).

Statements are prepared on their `prepare_threshold`-th run on a connection, as psycopg
does, keyed by text and parameter types; at most `PREPARED_MAX` per connection (then the
rest run unprepared: the hot statements are a dozen).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import errors as e
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

__all__ = ["Lean", "Slot"]

PREPARED_MAX = 200
# A rolled-back block's running statement is cancelled every CANCEL_AGAIN s until it has
# answered, for CANCEL_FOR s at most (Lean.rollback).
CANCEL_AGAIN = 0.5
CANCEL_FOR = 5.0
_AUTO = PyFormat.AUTO
_AUTOS = [[_AUTO] * n for n in range(64)]  # the formats asked for n parameters
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_ABORTED = pq.ExecStatus.PIPELINE_ABORTED
_FATAL = pq.ExecStatus.FATAL_ERROR
_ACTIVE = pq.TransactionStatus.ACTIVE
_IDLE = pq.TransactionStatus.IDLE
_BAD = pq.ConnStatus.BAD
# `%s` placeholders (psycopg's) and `%%`, a literal percent sign in such a query.
_PERCENT = re.compile(rb"%%|%s")


class Slot:
    """One statement sent: its result once read (`done`), or the error that ended it."""

    __slots__ = ("done", "error", "prepared", "result")

    def __init__(self, prepared: bytes | None = None) -> None:
        self.done = False
        self.result: pq.abc.PGresult | None = None
        self.error: psycopg.Error | None = None
        self.prepared = prepared  # a Parse of this name: kept only if it succeeds


class Lean:
    """One connection in libpq's pipeline mode for its whole life. Not for concurrent use:
    a pool hands it to one transaction at a time."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], prepare_threshold: int = 2) -> None:
        self.conn = conn
        self.pg = conn.pgconn
        self._fd = self.pg.socket
        self._tx = Transformer(conn)
        self._encoding = conn.info.encoding
        self._threshold = prepare_threshold
        self._seen: dict[tuple[bytes, tuple[int, ...]], int] = {}
        self.prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._names = 0  # prepared statement names made: never one used twice
        self._queue: deque[Slot] = deque()  # sent, answer not yet read; a Sync is _SYNC_SLOT
        self._syncs = 0  # Syncs sent and not yet answered
        self.error: psycopg.Error | None = None  # the first of this implicit transaction
        self._texts: dict[str, bytes] = {}
        self._unsynced = False  # something sent since the last Sync
        self.pg.nonblocking = 1
        self.pg.enter_pipeline_mode()

    @property
    def closed(self) -> bool:
        return self.conn.closed

    @property
    def broken(self) -> bool:
        return self.conn.broken or self.pg.status == _BAD

    @property
    def idle(self) -> bool:
        """Nothing in flight and no transaction open: fit for the next one."""
        return not self._queue and not self.closed and self.pg.transaction_status == _IDLE

    # Sending.

    def send(self, sql: str | bytes, params: Sequence[Any] = ()) -> Slot:
        """Queue one statement (`%s` placeholders in a str, `$n` in bytes); `take` reads it."""
        query = sql if isinstance(sql, bytes) else self._text(sql)
        self._unsynced = True
        tx = self._tx
        if params:
            n = len(params)
            values = tx.dump_sequence(params, _AUTOS[n] if n < len(_AUTOS) else [_AUTO] * n)
            types: tuple[int, ...] = tx.types or ()
            formats = tx.formats
        else:
            values, types, formats = None, (), None
        key = (query, types)
        name = self.prepared.get(key)
        pg = self.pg
        if name is None:
            seen = self._seen.get(key, 0) + 1
            if seen >= self._threshold and len(self.prepared) < PREPARED_MAX:
                self._names += 1
                name = self.prepared[key] = b"_ma_%d" % self._names
                self._seen.pop(key, None)
                pg.send_prepare(name, query, param_types=types)
                self._queue.append(Slot(prepared=name))
            else:
                self._seen[key] = seen
                pg.send_query_params(query, values, param_types=types, param_formats=formats)
                slot = Slot()
                self._queue.append(slot)
                return slot
        pg.send_query_prepared(name, values, param_formats=formats)
        slot = Slot()
        self._queue.append(slot)
        return slot

    async def run(self, sql: str | bytes, params: Sequence[Any] = ()) -> None:
        """Queue a statement whose rows nobody reads; sent with the next read or the Sync,
        its error raised there. Not flushed now: the write would wake the server's backend,
        which a 2-core box then ran on this process's core, taking it from the Python still
        to run before the Sync (a hand-off after its held insert: 0.33 ms from the insert's
        send to the claim's, 0.06 once queued). Measured under issue #15: PostgreSQL
        dispatch p50 2.42-2.65 → 2.17-2.57 ms in four alternating pairs, no difference
        beyond the noise in `bench.peers`; fewer writes either way."""
        self.send(sql, params)

    async def fetch(self, sql: str | bytes, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The statement's rows: sent with everything queued before it, then read."""
        slot = self.send(sql, params)
        return await self.take(slot)

    async def take(self, slot: Slot) -> list[tuple[Any, ...]]:
        """`slot`'s rows, waiting for its answer if need be; its error (or, for a statement
        skipped after an earlier one failed, that one's) raised."""
        if not slot.done:
            # The server holds its answers until a Sync or a Flush message: ask for them.
            self.pg.send_flush_request()
            await self._flush()
            while not slot.done:
                await self._read()
        if slot.error is not None:
            raise slot.error
        res = slot.result
        if res is None or res.ntuples == 0:
            return []
        tx = self._tx
        tx.set_pgresult(res)
        return tx.load_rows(0, res.ntuples, tuple)

    async def sync(self, meanwhile: Sequence[Callable[[], None]] = ()) -> None:
        """End the implicit transaction (commit, or roll back after an error) and wait for
        every answer; the transaction's first error is raised. Nothing sent since the last
        Sync: nothing to do (a transaction committed early, store.db.Tx.after). `meanwhile`
        runs once the Sync is sent, before the answers are read: the server executes and
        commits in the meantime (~0.7 ms of a dispatch on a 2-core box), and this process
        had nothing else to do for the request."""
        if not self._unsynced and self.error is None:
            return
        self._unsynced = False
        self.pg.pipeline_sync()
        self._syncs += 1
        self._queue.append(_SYNC_SLOT)
        await self._flush()
        for work in meanwhile:
            work()
        while self._syncs:
            await self._read()
        error, self.error = self.error, None
        if error is not None:
            raise error

    async def rollback(self) -> None:
        """After a failure in the block: whatever ran is rolled back. A statement still
        running on the server (the wait for it was cancelled) is cancelled first, as psycopg
        does; never a Sync before the ROLLBACK, which would commit what ran so far.

        A cancel reaches only the statement running when it arrives: one that lands as the
        statement before ends, or before the next has begun (the statements of a block go
        together), is dropped, and the ROLLBACK would then wait for the statement's end (a
        request cancelled while a slow one runs held its connection that long). So it is
        sent again every CANCEL_AGAIN s while the answers do not come, for CANCEL_FOR s at
        most; after that the connection is given up (raised: the pool closes it, and the
        server rolls its transaction back)."""
        running = self.pg.transaction_status == _ACTIVE and bool(self._queue)
        if running:
            await self.conn.cancel_safe(timeout=CANCEL_FOR)
        self.send(b"ROLLBACK")
        synced = asyncio.ensure_future(self.sync())
        try:
            deadline = asyncio.get_running_loop().time() + CANCEL_FOR
            while running and not synced.done():
                done, _ = await asyncio.wait({synced}, timeout=CANCEL_AGAIN)
                if done:
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"a cancelled statement still ran after {CANCEL_FOR:g} s")
                await self.conn.cancel_safe(timeout=CANCEL_FOR)
            await synced
        except psycopg.Error:
            pass  # the error that made us roll back, or the cancellation's: known already
        finally:
            synced.cancel()  # given up, or we are cancelled ourselves: the pool closes us

    # The socket.

    async def _flush(self) -> None:
        pg = self.pg
        while pg.flush():
            await self._ready(writable=True)

    async def _read(self) -> None:
        """Read what the server has answered; wait for the socket once if it had nothing."""
        pg = self.pg
        pg.consume_input()
        if not self._drain():
            await self._ready(writable=False)
            pg.consume_input()
            self._drain()

    def _drain(self) -> bool:
        """Hand each complete answer to its slot, in order; whether any was."""
        pg = self.pg
        queue = self._queue
        got = False
        while not pg.is_busy():
            res = pg.get_result()
            if res is None:
                # The end of one statement's results (or nothing more for now).
                if queue and queue[0] is not _SYNC_SLOT and queue[0].done:
                    queue.popleft()
                    continue
                break
            got = True
            status = res.status
            if status == _SYNC:
                while queue and queue[0] is not _SYNC_SLOT:  # answered by an abort already
                    queue.popleft()
                if queue:
                    queue.popleft()
                self._syncs -= 1
                continue
            slot = queue[0]
            if status == _FATAL or status == _ABORTED:
                if status == _FATAL:
                    err = e.error_from_result(res, encoding=self._encoding)
                    if self.error is None:
                        self.error = err
                slot.error = self.error or e.PipelineAborted("pipeline aborted")
                self._forget_prepared(slot)
            else:
                slot.result = res
            slot.done = True
        return got

    def _forget_prepared(self, slot: Slot) -> None:
        if slot.prepared is not None:
            for key, name in list(self.prepared.items()):
                if name == slot.prepared:
                    del self.prepared[key]

    async def _ready(self, *, writable: bool) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = self._fd

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        if writable:
            loop.add_writer(fd, wake)
        else:
            loop.add_reader(fd, wake)
        try:
            await fut
        finally:
            if writable:
                loop.remove_writer(fd)
            else:
                loop.remove_reader(fd)

    def _text(self, sql: str) -> bytes:
        """`%s` placeholders as `$n` (and `%%` as `%`), once per statement text."""
        text = self._texts.get(sql)
        if text is None:
            n = 0

            def number(m: re.Match[bytes]) -> bytes:
                nonlocal n
                if m.group() == b"%%":
                    return b"%"
                n += 1
                return b"$%d" % n

            text = self._texts[sql] = _PERCENT.sub(number, sql.encode())
        return text


# The place of a Sync in the queue of answers awaited.
_SYNC_SLOT = Slot()
_SYNC_SLOT.done = False
