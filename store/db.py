"""Engines, transactions and after-commit notification.

`Database.tx()` is the unit of work: services take the `Tx`, only flush, and queue
notifications with `tx.notify()`; the context manager commits and then publishes them (on
PostgreSQL the same notes also go out as one NOTIFY inside the transaction, delivered to
other replicas only if it commits).

SQLite allows one writer at a time, and ignores `FOR UPDATE SKIP LOCKED`; so on SQLite
write transactions take an in-process lock and begin with `BEGIN IMMEDIATE`. That lock is
what makes claims exactly-once there (the embedded default runs one control-plane process).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from store import errors, sqlite_inline
from store.hub import CHANNEL, Hub, encode

__all__ = ["Database", "Tx", "async_url", "sync_url"]


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


@dataclass
class Tx:
    session: AsyncSession
    db: Database
    notes: list[tuple[str, str]] = field(default_factory=list)

    def notify(self, topic: str, payload: str = "") -> None:
        """Publish `topic` to followers once this transaction has committed."""
        self.notes.append((topic, payload))

    async def execute(self, stmt: Any, params: Any = None) -> sa.Result[Any]:
        return await self.session.execute(stmt, params)


class Database:
    def __init__(self, url: str, *, hub: Hub | None = None, echo: bool = False, pool_size: int = 10) -> None:
        self.url = url
        self.hub = hub or Hub()
        self.is_sqlite = sa.make_url(url).get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = sa.make_url(url).database or ""
            if database in ("", ":memory:"):
                raise errors.Invalid(
                    "SQLite needs a file path (an in-memory database is per connection)",
                    code="bad_database_url",
                )
            kwargs["async_creator"] = sqlite_inline.connect(database)
        else:
            # No pre-ping: it costs a round trip per checkout. A dropped connection is
            # detected on use, invalidates the pool, and that request gets a 503.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2, pool_timeout=10)
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        # PostgreSQL reads run in autocommit: one round trip per query instead of three
        # (BEGIN, query, ROLLBACK). Each read statement still sees one consistent snapshot.
        self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        if self.is_sqlite:
            # Readers get their own engine with deferred BEGIN, so they never queue behind
            # the writer (WAL lets them read the last committed state meanwhile).
            _sqlite_setup(self.engine, immediate=True)
            self.read_engine = create_async_engine(async_url(url), **kwargs)
            _sqlite_setup(self.read_engine, immediate=False)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        """A write transaction; commits on success, then publishes its notes."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            with _unavailable_on_connection_errors():
                async with self.sessions() as session:
                    async with session.begin():
                        tx = Tx(session, self)
                        yield tx
                        if tx.notes and not self.is_sqlite:
                            for payload in encode(tx.notes):
                                await session.execute(
                                    sa.text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload}
                                )
        for topic, payload in tx.notes:
            self.hub.publish(topic, payload)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only session (no lock on SQLite: WAL readers never block the writer)."""
        with _unavailable_on_connection_errors():
            # Closing (not rolling back) ends the read transaction without expiring the
            # objects handed out, so callers can use them after the block.
            async with self.read_sessions() as session:
                yield session

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except (OperationalError, DBAPIError, OSError):
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


@contextlib.contextmanager
def _unavailable_on_connection_errors() -> Any:
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        if exc.connection_invalidated or isinstance(exc, OperationalError):
            raise errors.Unavailable(
                "the database is unavailable; retry shortly", code="database_unavailable"
            ) from exc
        raise


def _sqlite_setup(engine: AsyncEngine, *, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take over transaction control from the driver so BEGIN IMMEDIATE is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        cur.execute("PRAGMA foreign_keys=ON")
        # Short: statements run inline on the event loop (see sqlite_inline), and the only
        # other writers are brief (`db upgrade`, a CLI); a long wait would stall the loop.
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
