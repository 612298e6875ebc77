"""The drivers under store.fastpath: a transaction's own DBAPI connection, and the
conversions its columns need.

`SQLite` wraps store.sqlite_inline's connection (statements run inline), `Postgres` a
psycopg 3 async connection (in a fast_tx, in pipeline mode: store.pg_fast). Rows read and
written here convert JSON, UTC timestamps and booleans the way SQLAlchemy's column types
do, so that rows written through either path read back the same.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic_core import to_json

from store.db import Tx
from store.models import Agent, Task, TaskEvent, UTCDateTime

if TYPE_CHECKING:  # psycopg takes ~0.1 s to import; SQLite needs none of it (store.db)
    from store.pg_lean import Lean

__all__ = [
    "AGENTS",
    "COLS",
    "EVENTS",
    "EVENT_COLS",
    "NOTHING_MORE",
    "RETURNING",
    "TASKS",
    "Cols",
    "Postgres",
    "Rows",
    "SQLite",
    "bind",
    "driver",
    "pg_load",
    "sql",
    "statements",
]

Rows = list[tuple[Any, ...]]


class Cols:
    """A table's columns, and which of them need converting."""

    def __init__(self, table: sa.Table) -> None:
        self.names: tuple[str, ...] = tuple(c.name for c in table.c)
        self.json = frozenset(c.name for c in table.c if isinstance(c.type, sa.JSON))
        self.time = frozenset(c.name for c in table.c if isinstance(c.type, UTCDateTime))
        self.bool = frozenset(c.name for c in table.c if isinstance(c.type, sa.Boolean))
        self.listed = ", ".join(self.names)


TASKS = Cols(Task.__table__)
AGENTS = Cols(Agent.__table__)
EVENTS = Cols(TaskEvent.__table__)
COLS = TASKS.names
_JSON, _TIME = TASKS.json, TASKS.time
EVENT_COLS = ("task_id", "seq", "kind", "data", "attempt", "created_at")
assert set(EVENT_COLS) == {c.name for c in TaskEvent.__table__.c}


_PARSE: Any = object()
# The stored text of an empty JSON value, and a maker of a fresh (mutable) copy of it.
_EMPTY_JSON: dict[str, Any] = {"null": lambda: None, "{}": dict, "[]": list}


class SQLite:
    """sqlite3 through store.sqlite_inline: statements run inline, like the rest."""

    ph = "?"

    def __init__(self, conn: Any) -> None:
        self.conn = conn  # sqlite_inline.InlineConnection

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.conn.run(sql, params).fetchall()

    async def send(self, sql: str, params: Sequence[Any]) -> Callable[[], Awaitable[Rows]]:
        """As Postgres.send; in-process, the statement simply runs now."""
        rows = self.conn.run(sql, params).fetchall()

        async def take() -> Rows:
            return rows

        return take

    async def run(self, sql: str, params: Sequence[Any]) -> None:
        self.conn.run(sql, params)

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.run_many(sql, rows)

    def time(self, value: datetime | None) -> Any:
        # SQLAlchemy's SQLite DATETIME storage format, in UTC (models.UTCDateTime):
        # "%Y-%m-%d %H:%M:%S.%f", written by isoformat (strftime costs ~4× as much), whose
        # "+00:00" is cut off: a copy without the zone (`replace`) took as long again, and a
        # creation formats four of these.
        if value is None:
            return None
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.isoformat(" ", "microseconds")[:-6]

    def json(self, value: Any) -> Any:
        # pydantic's encoder: the same JSON as json.dumps (NaN included) without its spaces
        # and \u escapes, in an eighth of the time (4 µs a streamed event's data with
        # json.dumps, which the float formatting makes slow).
        return to_json(value).decode()

    def load(self, row: Sequence[Any], cols: Cols = TASKS) -> dict[str, Any]:
        out = dict(zip(cols.names, row, strict=True))
        for k in cols.json:
            v = out[k]
            if isinstance(v, str):
                # Most of a fresh task's JSON columns are empty: no parser for those.
                empty = _EMPTY_JSON.get(v, _PARSE)
                out[k] = json.loads(v) if empty is _PARSE else empty()
        for k in cols.time:
            v = out[k]
            out[k] = datetime.fromisoformat(v).replace(tzinfo=UTC) if isinstance(v, str) else v
        for k in cols.bool:
            out[k] = bool(out[k])
        return out


class Postgres:
    """A fast_tx's connection on PostgreSQL (store.pg_lean: libpq's pipeline, driven
    directly); it prepares a statement run often on its own."""

    ph = "%s"

    def __init__(self, conn: Lean) -> None:
        self.conn = conn

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await self.conn.fetch(sql, params)

    async def send(self, sql: str | bytes, params: Sequence[Any]) -> Callable[[], Awaitable[Rows]]:
        """Send the statement (`$n` placeholders when bytes) and return how to read its
        rows later. In the pipeline nothing waits for its answer until `take()`: statements
        sent one after another, then read, share one round trip."""
        conn = self.conn
        slot = conn.send(sql, params)

        async def take() -> Rows:
            return await conn.take(slot)

        return take

    async def run(self, sql: str, params: Sequence[Any]) -> None:
        await self.conn.run(sql, params)

    async def run_raw(self, sql: bytes, params: Sequence[Any]) -> None:
        """A statement with `$n` placeholders, sent as it is."""
        await self.conn.run(sql, params)

    def time(self, value: datetime | None) -> Any:
        return value

    def json(self, value: Any) -> Any:
        # The JSON text as a plain str, which psycopg's C dumper sends as it is, of no type
        # (PostgreSQL takes the column's, or the cast's where a statement has no column for
        # it: `$n::json`). A psycopg `Json` wrapper cost five Python calls a value (the
        # wrapper, the dumper's lookup and its `dump`), nine values a creation; the text is
        # the same pydantic encoder's either way (pg_fast sets it as psycopg's).
        return to_json(value).decode()

    def load(self, row: Sequence[Any], cols: Cols = TASKS) -> dict[str, Any]:
        return pg_load(row, cols)


class PostgresSession(Postgres):
    """A full `tx()`'s connection on PostgreSQL (SQLAlchemy's psycopg one, outside pipeline
    mode): the same statements, a cursor each. Used where fast_or_full runs work again."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self.conn.cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def send(self, sql: str | bytes, params: Sequence[Any]) -> Callable[[], Awaitable[Rows]]:
        if isinstance(sql, bytes):  # `$n` placeholders: a raw cursor's, as run_raw
            from psycopg import AsyncRawCursor

            async with AsyncRawCursor(self.conn) as cur:
                await cur.execute(sql, params)
                rows = await cur.fetchall()
        else:
            rows = await self.fetch(sql, params)

        async def take() -> Rows:
            return rows

        return take

    async def run(self, sql: str, params: Sequence[Any]) -> None:
        async with self.conn.cursor() as cur:
            await cur.execute(sql, params)

    async def run_raw(self, sql: bytes, params: Sequence[Any]) -> None:
        # A raw cursor: psycopg parses a `%s` query anew on every call past 50 parameters
        # or 4 KB of text; a `$n` one goes as it is.
        from psycopg import AsyncRawCursor

        async with AsyncRawCursor(self.conn) as cur:
            await cur.execute(sql, params)


def pg_load(row: Sequence[Any], cols: Cols) -> dict[str, Any]:
    out = dict(zip(cols.names, row, strict=True))
    for k in cols.time:
        v = out[k]
        if v is not None:
            out[k] = v.astimezone(UTC)
    return out


async def driver(tx: Tx) -> SQLite | Postgres:
    if tx.driver is None:
        raw: Any = tx.raw
        if raw is not None:  # a fast_tx's own connection
            tx.driver = SQLite(raw) if tx.db.is_sqlite else Postgres(raw)
        else:  # a full tx's: its session's driver connection
            conn = await tx.session.connection()
            drv = (await conn.get_raw_connection()).driver_connection
            tx.driver = SQLite(drv) if tx.db.is_sqlite else PostgresSession(drv)
    d: SQLite | Postgres = tx.driver
    if tx.held is not None and isinstance(d, Postgres):
        # Held writes (insert_task) go before any other statement, which may read their rows.
        (ctes, params), tx.held = tx.held, None
        await d.run_raw(ctes + NOTHING_MORE, params)
    return d


def sql(d: SQLite | Postgres, template: str) -> str:
    """`template`'s `?` placeholders as the driver's."""
    return template.replace("?", d.ph) if d.ph != "?" else template


# What ends held writes (store.db.Tx.held, a WITH of data-modifying statements only) sent
# on their own: a WITH needs a main query.
NOTHING_MORE = b" SELECT 1"
# The statement texts, built once per shape (dialect, columns set, batch size...).
statements: dict[tuple[Any, ...], str] = {}
RETURNING = ", ".join(COLS)


def bind(d: SQLite | Postgres, names: Sequence[str], values: dict[str, Any]) -> list[Any]:
    """The tasks columns `names` of `values`, in that order, as the driver takes them.

    One comprehension for the row, not a call per column: a task's insert binds all ~35
    (calls are most of the Python a hot statement costs beyond the driver)."""
    json, time = d.json, d.time
    return [json(values[n]) if n in _JSON else time(values[n]) if n in _TIME else values[n] for n in names]
