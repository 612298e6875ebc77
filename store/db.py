"""Engines, transactions and after-commit notification.

`Database.tx()` is the unit of work: services take the `Tx`, only flush, and queue
notifications with `tx.notify()`; the context manager commits and then publishes them (on
PostgreSQL the same notes also go out as one NOTIFY inside the transaction, delivered to
other replicas only if it commits).

SQLite allows one writer at a time, and ignores `FOR UPDATE SKIP LOCKED`; so on SQLite
write transactions take an in-process lock and begin with `BEGIN IMMEDIATE`. That lock is
what makes claims exactly-once there (the embedded default runs one control-plane process).

Closing: `dispose()` closes every pooled connection, including those still checked out when
it is called. SQLAlchemy's own dispose closes only the idle ones; a connection in use (a
request cancelled mid-query still rolling back, a shielded read, every task of a server
torn down at once) would later go back into the discarded pool, and an async driver's
connection dropped that way is garbage-collected open. So `dispose()` first waits for the
units of work in flight (bounded), and a connection returned after it is closed, not pooled.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, overload

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.selectable import TypedReturnsRows

from kernel import errors
from store import sqlite_inline
from store.group_commit import GroupCommit
from store.hub import CHANNEL, Hub, encode

if TYPE_CHECKING:  # imported when used: psycopg takes ~0.1 s to import, SQLite needs none of it
    from store import pg_fast

__all__ = ["Database", "SessionNeeded", "Tx", "async_url", "sync_url"]

_Ts = TypeVarTuple("_Ts")
_T = TypeVar("_T")
# Bound parameters of one statement, or of an executemany (a list of rows).
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


def async_url(url: str) -> str:
    """The async driver form of a database URL (`sqlite+aiosqlite`, `postgresql+psycopg`)."""
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        return str(u.set(drivername="sqlite+aiosqlite"))
    if u.get_backend_name() == "postgresql":
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise errors.Invalid(f"unsupported database URL scheme: {u.drivername}", code="bad_database_url")


def sync_url(url: str) -> str:
    """The sync driver form (for Alembic): `sqlite`, `postgresql+psycopg`."""
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        return str(u.set(drivername="sqlite"))
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_dsn(url: str) -> str:
    u = sa.make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


class SessionNeeded(Exception):
    """Code running in a `Database.fast_tx()` asked for the ORM session, which it has not:
    the caller rolls back and does the work again in a `Database.tx()`."""


@dataclass
class Tx:
    _session: AsyncSession | None
    db: Database
    notes: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    # The connection's driver-level wrapper, once store.fastpath has asked for it.
    driver: Any = None
    # The driver connection itself, in a fast_tx (store.fastpath uses it as it is).
    raw: Any = None
    # Writes store.fastpath holds back so that the next ones may join them in one statement
    # (a task's creation, its audit row, the commit's notifications): `WITH x AS (INSERT
    # ...), ...` without its main query, `$n` placeholders, and its parameters. Sent
    # before any other statement, or with the commit. PostgreSQL's fast_tx only.
    held: tuple[bytes, list[Any]] | None = None
    # Set by store.fastpath when the writes check in SQL something it assumed instead of
    # reading it (an agent's cached route): told an error of the transaction, whether it
    # says the assumption failed; then the work runs again in a full `tx()`.
    stale: Callable[[BaseException], bool] | None = None
    # An agent's route (name, default queue, requires as stored) store.fastpath took from
    # its cache for the task it is creating: the task's insert checks it.
    route: tuple[str, str | None, str] | None = None
    # Reading rows after the commit (PostgreSQL's fast_tx, when no other replica needs this
    # transaction's NOTIFYs: `deferrable`): work may put here what reads the answers of its
    # last statements; fast_tx commits first, so that those statements and the Sync share
    # one round trip, then runs these (`committed` set) before it returns. They must not
    # need the transaction any more: what they read anew goes in a transaction of its own.
    # (A replica heard for the first time while such a transaction runs gets none of its
    # NOTIFYs: as for one heard just after a commit, its warm-up's wake_all covers it.)
    deferrable: bool = False
    after: list[Callable[[], Awaitable[None]]] = field(default_factory=list[Callable[[], Awaitable[None]]])
    committed: bool = False
    # Run once the commit is sent, while its answer is awaited (PostgreSQL's fast_tx with
    # `after`): work for after the commit that needs nothing from it (a hand-off builds its
    # worker's answer here, store.handoff). They must not raise.
    meanwhile: list[Callable[[], None]] = field(default_factory=list[Callable[[], None]])
    # A worker's parked claim the task being created may be inserted claimed for, where the
    # INSERT runs at once (SQLite): a store.born.Claimant, set by store.handoff around the
    # creation and asked by store.statemachine.create. (PostgreSQL rewrites the held one.)
    claimant: Any = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise SessionNeeded
        return self._session

    def notify(self, topic: str, payload: str = "") -> None:
        """Publish `topic` to followers once this transaction has committed."""
        self.notes.append((topic, payload))

    @overload
    async def execute(self, stmt: TypedReturnsRows[*_Ts], params: Params = None) -> sa.Result[*_Ts]: ...
    @overload
    async def execute(self, stmt: sa.Executable, params: Params = None) -> sa.Result[*tuple[Any, ...]]: ...
    async def execute(self, stmt: sa.Executable, params: Params = None) -> sa.Result[*tuple[Any, ...]]:
        """The session's `execute`, typed like it (rows of a typed select are typed)."""
        return await self.session.execute(stmt, params)


def _work_name(work: Callable[..., Any]) -> str:
    """The function's qualified name; a functools.partial's is its function's (not "partial")."""
    func = getattr(work, "func", work)
    return str(getattr(func, "__qualname__", type(func).__name__))


async def _finish(after: list[Callable[[], Awaitable[None]]]) -> None:
    """Tx.after's reads, once committed: the work cannot be run again now, so a need for the
    session here is a bug, not a fallback."""
    try:
        for read in after:
            await read()
    except SessionNeeded as exc:
        raise RuntimeError("a read after the commit needed the transaction") from exc


class Database:
    def __init__(
        self,
        url: str,
        *,
        hub: Hub | None = None,
        echo: bool = False,
        pool_size: int = 10,
        pool_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.hub = hub or Hub()
        self.is_sqlite = sa.make_url(url).get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        database = sa.make_url(url).database or ""
        self._checkpointer: sqlite_inline.Checkpointer | None = None
        self._fast: sqlite_inline.FastWriter | None = None
        self._pg_fast: pg_fast.FastPool | None = None
        self._pg_reads: pg_fast.FastPool | None = None
        self.fast_fallbacks: collections.Counter[str] = collections.Counter()
        if self.is_sqlite:
            if database in ("", ":memory:"):
                raise errors.Invalid(
                    "SQLite needs a file path (an in-memory database is per connection)",
                    code="bad_database_url",
                )
            self._checkpointer = checkpointer = sqlite_inline.Checkpointer(database)
            kwargs["async_creator"] = sqlite_inline.connect(
                database, immediate=True, checkpointer=checkpointer
            )
            self._fast = sqlite_inline.FastWriter(database, checkpointer)
        else:
            # No pre-ping: it costs a round trip per checkout. A dropped connection is
            # detected on use, invalidates the pool, and that request gets a 503.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2, pool_timeout=pool_timeout)
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        if not self.is_sqlite:
            # fast_tx's own connections, opened with the engine's own connect arguments
            # (host, credentials, URL options, psycopg adapters). Up to `pool_size`: the hot
            # routes' transactions are short, and the engine's pool keeps its own.
            from store import pg_fast

            _, connect_args = self.engine.dialect.create_connect_args(self.engine.url)
            self._pg_fast = pg_fast.FastPool(connect_args, size=pool_size, timeout=pool_timeout)
            # fast_read's: apart, so a crowd of readers (followers opening their streams)
            # never holds the connections the writes wait for.
            self._pg_reads = pg_fast.FastPool(connect_args, size=max(2, pool_size // 2), timeout=pool_timeout)
        # PostgreSQL reads run in autocommit: one round trip per query instead of three
        # (BEGIN, query, ROLLBACK). Each read statement still sees one consistent snapshot.
        self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        if self.is_sqlite:
            # Readers get their own engine with deferred BEGIN, so they never queue behind
            # the writer (WAL lets them read the last committed state meanwhile).
            kwargs["async_creator"] = sqlite_inline.connect(database, immediate=False)
            self.read_engine = create_async_engine(async_url(url), **kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._group = (
            GroupCommit(self._write_lock, self.hub.publish) if self._write_lock is not None else None
        )
        # Units of work (tx, read, ping) holding or about to hold a connection.
        self._in_flight = 0
        self._idle: asyncio.Future[None] | None = None
        self._disposed = False
        for engine in [self.engine, self.read_engine] if self.is_sqlite else [self.engine]:
            event.listen(engine.sync_engine, "checkin", self._on_checkin)

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncGenerator[Tx]:
        """A write transaction; commits on success, then publishes its notes."""
        lock = self._write_lock or contextlib.nullcontext()
        with self._unit():
            async with lock:
                if self._group is not None:
                    self._group.flush()  # the fast writer's open group: SQLite has one writer
                with _unavailable_on_connection_errors():
                    async with self.sessions() as session:
                        async with session.begin():
                            tx = Tx(session, self)
                            yield tx
                            if tx.notes and not self.is_sqlite and self.hub.peers.needed():
                                for payload in encode(tx.notes, self.hub.origin):
                                    await session.execute(
                                        sa.text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload}
                                    )
        for topic, payload in tx.notes:
            self.hub.publish(topic, payload)

    @contextlib.asynccontextmanager
    async def fast_tx(self) -> AsyncGenerator[Tx]:
        """A write transaction for store.fastpath statements only, without SQLAlchemy: on
        the hot routes SQLAlchemy's session, greenlet hops and pool checkout cost more than
        the statements. `tx.raw` is the driver connection (sqlite_inline's, or a psycopg
        one from store.pg_fast). Code that asks for `tx.session` gets SessionNeeded, after
        which this transaction is rolled back: use `fast_or_full`, which then runs the same
        work in a `tx()`. Commit and notes as in `tx()`."""
        if self._pg_fast is not None:
            pg_tx: Tx | None = None
            try:
                with self._unit():
                    async with self._pg_fast.transaction() as conn:
                        tx = pg_tx = Tx(None, self, raw=conn, deferrable=not self.hub.peers.needed())
                        yield tx
                        # Delivered to other replicas on commit only, if one listens
                        # (store.peers); with the held writes.
                        notify = tx.notes and self.hub.peers.needed()
                        payloads = encode(tx.notes, self.hub.origin) if notify else []
                        if payloads or tx.held is not None:
                            await self._pg_fast.notify(conn, CHANNEL, payloads, tx.held)
                        if tx.after:
                            await conn.sync(tx.meanwhile)  # the commit (the pool's own Sync is then none)
                            tx.committed = True
                            await _finish(tx.after)
            except Exception as exc:
                if pg_tx is not None and not pg_tx.committed and pg_tx.stale is not None and pg_tx.stale(exc):
                    raise SessionNeeded from exc  # rolled back: fast_or_full runs it again
                raise
            for topic, payload in tx.notes:
                self.hub.publish(topic, payload)
            return
        assert self._fast is not None and self._write_lock is not None and self._group is not None
        with self._unit():
            async with self._write_lock:
                conn = self._fast.connection()
                tx = Tx(None, self, raw=conn)
                conn.savepoint()  # committed with the others of its loop turn (store.group_commit)
                try:
                    yield tx
                    conn.release()
                except BaseException as exc:
                    if not conn.rollback_to():
                        self._group.abort(exc)
                    elif self._group.idle:
                        conn.end_empty()  # alone in its group: nothing to wait for
                    raise
                committed = self._group.join(conn, tx.notes)  # it publishes them on the commit
            await committed

    async def fast_or_full(self, work: Callable[[Tx], Awaitable[_T]]) -> _T:
        """`work(tx)` in a `fast_tx()`, or again in a `tx()` when it needed the session.
        `work` must have no effect outside the transaction before it returns."""
        try:
            async with self.fast_tx() as tx:
                return await work(tx)
        except SessionNeeded:
            # Counted by the work's name: a hot path that falls back often is paying twice.
            self.fast_fallbacks[_work_name(work)] += 1
        async with self.tx() as tx:
            return await work(tx)

    @property
    def fast_reads(self) -> bool:
        """Whether `fast_read` is there (PostgreSQL): SQLite's sessions are cheap already."""
        return self._pg_reads is not None

    async def fast_read(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        """PostgreSQL: the rows of each plain-SQL statement (psycopg's `%s` placeholders),
        all in one round trip on a psycopg connection of our own (store.pg_fast), without
        SQLAlchemy's session, pool checkout and greenlet hops: on the server's one event
        loop those cost ~1 ms of Python per read, which a claim running at the same moment
        waits behind (a follower opens its task's stream right after creating it)."""
        assert self._pg_reads is not None, "fast_read is PostgreSQL's (see fast_reads)"
        with self._unit():
            return await self._pg_reads.read(statements)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncGenerator[AsyncSession]:
        """A read-only session (no lock on SQLite: WAL readers never block the writer)."""
        with self._unit(), _unavailable_on_connection_errors():
            # Closing (not rolling back) ends the read transaction without expiring the
            # objects handed out, so callers can use them after the block.
            async with self.read_sessions() as session:
                yield session

    async def ping(self) -> bool:
        try:
            with self._unit():
                async with self.engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            return True
        except (OperationalError, DBAPIError, OSError):
            return False

    async def dispose(self, grace: float = 5.0) -> None:
        """Close every connection of the pools; call it once, when the process is done.

        Units of work still in flight get up to `grace` seconds to return their connection
        (a cancelled one is usually only rolling back); one returned later is closed on its
        return. Runs to the end even if the caller is cancelled meanwhile.
        """
        await _to_completion(self._dispose(grace))

    async def _dispose(self, grace: float) -> None:
        if self._in_flight:
            self._idle = asyncio.get_running_loop().create_future()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._idle), grace)
            finally:
                self._idle = None
        self._disposed = True
        await self.engine.dispose()
        if self._pg_fast is not None:
            await self._pg_fast.close()
        if self._pg_reads is not None:
            await self._pg_reads.close()
        if self.is_sqlite:  # on PostgreSQL the read engine shares the pool
            await self.read_engine.dispose()
            if self._group is not None and self._write_lock is not None:
                async with self._write_lock:
                    self._group.flush()  # a group still open commits, as it would have
            if self._fast is not None:
                self._fast.close()
            if self._checkpointer is not None:
                await asyncio.to_thread(self._checkpointer.stop)

    @contextlib.contextmanager
    def _unit(self) -> Generator[None]:
        """Count a unit of work until its session is closed (the session's own exit runs to
        completion even when its task is cancelled, so this ends after the connection is back)."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            idle = self._idle
            if not self._in_flight and idle is not None and not idle.done():
                idle.get_loop().call_soon_threadsafe(_set_done, idle)

    def _on_checkin(self, dbapi_conn: Any, record: Any) -> None:
        # After dispose, the pool a connection returns to has been discarded: close the
        # connection now (we are in its session's close, where the async driver can still
        # run) instead of leaving it for the garbage collector, which cannot close it.
        if self._disposed and dbapi_conn is not None:
            record.invalidate()


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _to_completion(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` in a task of its own to the end; a cancellation of the caller meanwhile is
    re-raised afterwards (a clean-up abandoned half-way would strand what it was closing)."""
    task = asyncio.ensure_future(coro)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
    task.result()
    if cancelled is not None:
        raise cancelled


@contextlib.contextmanager
def _unavailable_on_connection_errors() -> Generator[None]:
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        if exc.connection_invalidated or isinstance(exc, OperationalError):
            raise errors.Unavailable(
                "the database is unavailable; retry shortly", code="database_unavailable"
            ) from exc
        raise
    except PoolTimeout as exc:  # every pooled connection busy for pool_timeout: overloaded
        raise errors.Unavailable(
            "the database is busy (no free connection); retry shortly", code="database_busy"
        ) from exc
