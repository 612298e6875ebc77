"""The hot path's statements, run on the transaction's own driver connection.

A task's common life is a handful of statements: insert it and its first event, claim it,
finish it and log its status. Through SQLAlchemy each costs ~0.3 ms of Python (building
the statement, its cache key, the execution context, result processing, the ORM session)
for a few tens of µs of SQLite work; on a 2-core box that Python was most of the control
plane's time per task. Here they are plain SQL, prepared once per dialect from the table
metadata (a column added to the model joins them), run on the DBAPI connection of the
caller's unit of work (`Tx`), with the conversions the column types need (JSON, UTC
timestamps, booleans) done the way SQLAlchemy does them, so rows written here and there
read back the same.

Semantics are store.statemachine's; it calls in here and keeps the rules. The store tests
run every path on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from store import fastdriver as fd
from store.db import Database, Tx
from store.fastdriver import AGENTS, COLS, EVENT_COLS, EVENTS, RETURNING

# Rows per multi-row INSERT on PostgreSQL; batches are cut to this, so at most this many
# statement texts are cached (a worker's batch is up to 100 events, 600 parameters).
_MULTI_ROWS = 100

__all__ = [
    "AUDIT_COLS",
    "agent_routing",
    "agents",
    "bump_running",
    "event_rows",
    "events_after",
    "held_creation",
    "insert_audit",
    "insert_events",
    "insert_task",
    "log_after",
    "routes",
    "send_claim",
    "send_update_task_events",
    "task_progress",
]


async def events_after(session: AsyncSession, task_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """store.events.rows_after on PostgreSQL, run on the read session's own driver
    connection: a live feed on another replica reads once per NOTIFY, and through
    SQLAlchemy's statement execution and result processing each read cost twice the CPU."""
    conn = await session.connection()
    d = fd.PostgresSession((await conn.get_raw_connection()).driver_connection)
    rows = await d.fetch(_EVENTS_AFTER, (task_id, after, limit))
    return [d.load(r, EVENTS) for r in rows]


_EVENTS_AFTER = (
    f"SELECT {EVENTS.listed} FROM task_events WHERE task_id = %s AND seq > %s ORDER BY seq LIMIT %s"
)
_TASK_PROGRESS = "SELECT status, last_seq FROM tasks WHERE id = %s"


async def task_progress(db: Database, task_id: str) -> tuple[str, int] | None:
    """PostgreSQL (`db.fast_reads`): the task's (status, last_seq), None if there is no
    such task; one round trip, no SQLAlchemy (Database.fast_read)."""
    (rows,) = await db.fast_read([(_TASK_PROGRESS, (task_id,))])
    return (rows[0][0], rows[0][1]) if rows else None


async def log_after(
    db: Database, task_id: str, after: int, limit: int, *, progress: bool
) -> tuple[list[dict[str, Any]], tuple[str, int] | None]:
    """PostgreSQL (`db.fast_reads`): store.events.rows_after, and with `progress` the
    task's (status, last_seq) read after them (None if there is no such task), in one
    round trip without SQLAlchemy (Database.fast_read)."""
    statements: list[tuple[str, Sequence[Any]]] = [(_EVENTS_AFTER, (task_id, after, limit))]
    if progress:
        statements.append((_TASK_PROGRESS, (task_id,)))
    found = await db.fast_read(statements)
    rows = [fd.pg_load(r, EVENTS) for r in found[0]]
    if not progress or not found[1]:
        return rows, None
    status, last = found[1][0]
    return rows, (status, last)


async def insert_task(tx: Tx, row: dict[str, Any], status: dict[str, Any]) -> None:
    """A new task's row and its first event: `status` as its data, seq 1, attempt 0, at
    the task's created_at.

    On PostgreSQL one statement (data-modifying WITHs: the event takes the id and time the
    task's INSERT returns). In a `fast_tx` it is not sent yet but held (`Tx.held`): the
    audit row of the creation joins it (insert_audit), and so do the commit's
    notifications (store.pg_fast), so that a `POST /tasks` is the agent's read and one
    statement; any other statement first sends it as it is. Each statement costs its own
    psycopg Python and syscalls: 5 statements -> 2 took a serial creation from 1077 to 855
    Python calls. SQLite runs the two INSERTs (no INSERT in a WITH there; in-process, they
    are cheap)."""
    d = await fd.driver(tx)
    params = fd.bind(d, COLS, row)
    if isinstance(d, fd.Postgres):
        params.append(d.json(status))
        route, tx.route = tx.route, None
        if route is not None:  # taken from agent_routing's cache: checked here
            params += route
        held = _CREATE if route is None else _CREATE_CHECKED
        if tx.raw is not None:
            # Only in a fast_tx: every statement there goes through _driver, or is the
            # commit's, which sends what is held first; a full tx's session would not.
            tx.held = (held, params)
        else:
            await d.run_raw(held + fd.NOTHING_MORE, params)
        return
    key = ("insert_task", d.ph)
    sql = fd.statements.get(key)
    if sql is None:
        sql = fd.statements[key] = f"INSERT INTO tasks ({RETURNING}) VALUES ({', '.join('?' for _ in COLS)})"
    await d.run(sql, params)
    await insert_events(tx, [(row["id"], 1, "status", status, 0, row["created_at"])])


def _dollars(start: int, n: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + n))


# A task and its first event (the event's data the last parameter), as a WITH of
# data-modifying statements only: what is held (Tx.held) ends with a main query of the
# sender's choosing, e.g. `fastdriver.NOTHING_MORE`, or the commit's pg_notify (store.pg_fast).
_CREATE = (
    f"WITH t AS (INSERT INTO tasks ({RETURNING}) VALUES ({_dollars(1, len(COLS))}) "
    f"RETURNING id, created_at), e AS (INSERT INTO task_events ({', '.join(EVENT_COLS)}) "
    f"SELECT id, 1, 'status', ${len(COLS) + 1}::json, 0, created_at FROM t)"
).encode()
# The same, for an agent's route taken from agent_routing's cache (its name, default queue
# and `requires` text the three last parameters): the event's insert joins the row count
# of agents still saying so, divided into 1. None left (edited, deleted: a name is unique)
# is a division by zero, which fails the whole statement and so the transaction (a WITH's
# SELECT runs only where it is used, and a division by a constant zero would fail already
# when planned, whatever the row: hence the join and the count).
_ROUTE_CHECK = (
    f"g AS (SELECT 1 / count(*) AS ok FROM agents WHERE name = ${len(COLS) + 2} "
    f"AND default_queue IS NOT DISTINCT FROM ${len(COLS) + 3} AND requires::text = ${len(COLS) + 4})"
)
_CREATE_CHECKED = (
    f"WITH {_ROUTE_CHECK}, "
    f"t AS (INSERT INTO tasks ({RETURNING}) VALUES ({_dollars(1, len(COLS))}) "
    f"RETURNING id, created_at), e AS (INSERT INTO task_events ({', '.join(EVENT_COLS)}) "
    f"SELECT t.id, 1, 'status', ${len(COLS) + 1}::json, 0, t.created_at FROM t, g WHERE g.ok = 1)"
).encode()


async def insert_events(tx: Tx, rows: Sequence[tuple[str, int, str, Any, int, datetime]]) -> None:
    """Rows of (task_id, seq, kind, data, attempt, created_at)."""
    d = await fd.driver(tx)
    times: dict[datetime, Any] = {}  # a batch shares one time: format it once
    values = [
        (t, s, k, d.json(data), a, times[at] if at in times else times.setdefault(at, d.time(at)))
        for t, s, k, data, a, at in rows
    ]
    if isinstance(d, fd.Postgres):
        # One INSERT of n rows: psycopg's executemany sends a Bind/Execute per row, in its
        # pipeline mode, whose set-up costs more than the statement for the common one row.
        for start in range(0, len(values), _MULTI_ROWS):
            chunk = values[start : start + _MULTI_ROWS]
            key = ("insert_events", d.ph, len(chunk))
            sql = fd.statements.get(key)
            if sql is None:
                # `$n` placeholders through a raw cursor: psycopg parses a `%s` query anew on
                # every call past 50 parameters (~12 µs an event); a raw one goes as it is.
                marks = ", ".join(
                    f"(${i + 1}, ${i + 2}, ${i + 3}, ${i + 4}, ${i + 5}, ${i + 6})"
                    for i in range(0, 6 * len(chunk), 6)
                )
                sql = fd.statements[key] = f"INSERT INTO task_events ({', '.join(EVENT_COLS)}) VALUES {marks}"
            await d.run_raw(sql.encode(), [v for row in chunk for v in row])
        return
    key = ("insert_events", d.ph)
    sql = fd.statements.get(key)
    if sql is None:
        cols = ", ".join(EVENT_COLS)
        sql = fd.statements[key] = fd.sql(d, f"INSERT INTO task_events ({cols}) VALUES (?, ?, ?, ?, ?, ?)")
    await d.many(sql, values)


async def send_claim(
    tx: Tx,
    queue: str,
    limit: int,
    values: dict[str, Any],
    now: datetime,
    needs: Sequence[str] | None = None,
    *,
    event: dict[str, Any],
) -> Callable[[], Awaitable[tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]]]:
    """Move up to `limit` pending tasks of `queue` (oldest id first) to the `values` given
    (status, lease, worker...), `attempt` and `last_seq` +1, `started_at` kept if set, and
    give each a `status` event with `event` as its data and the new `last_seq` as its seq.
    Sent: await what this returns for the rows after and their agents' rows by name (on
    PostgreSQL the answer may be read after the commit: see Tx.after).

    `needs` (store/prereqs.py) limits the claim to tasks that need nothing or one of those
    `needs` values; None (a worker that reports no capabilities) takes any task."""
    d = await fd.driver(tx)
    names = tuple(values)
    pg = isinstance(d, fd.Postgres)
    key = ("claim", d.ph, names, None if needs is None else len(needs))
    sql = fd.statements.get(key)
    if sql is None:
        sets = ", ".join(f"{n} = ?" for n in names)
        lock = " FOR UPDATE SKIP LOCKED" if pg else ""
        only = ""
        if needs is not None:
            only = (
                " AND (needs IS NULL"
                + (f" OR needs IN ({', '.join('?' for _ in needs)})" if needs else "")
                + ")"
            )
        sql = (
            f"UPDATE tasks SET {sets}, attempt = attempt + 1, last_seq = last_seq + 1, "
            "started_at = COALESCE(started_at, ?) "
            f"WHERE id IN (SELECT id FROM tasks WHERE queue = ? AND status = 'pending'{only} "
            f"ORDER BY id LIMIT ?{lock}) RETURNING {RETURNING}"
        )
        if pg:
            # The events in the same statement (a data-modifying WITH), and the agents'
            # rows joined to the tasks: one statement's Python and one round trip for the
            # whole claim. (Found by the tasks' own `agent`: a lookup by the claim's new
            # lease hash scanned every running task.) SQLite has no such WITH.
            sql = (
                f"WITH c AS ({sql}), e AS (INSERT INTO task_events ({', '.join(EVENT_COLS)}) "
                "SELECT id, last_seq, 'status', ?::json, attempt, ? FROM c) "
                f"SELECT {', '.join('c.' + n for n in COLS)}, {', '.join('a.' + n for n in AGENTS.names)} "
                "FROM c LEFT JOIN agents a ON a.name = c.agent"
            )
        sql = fd.statements[key] = fd.sql(d, sql)
    params = [*fd.bind(d, names, values), d.time(now), queue, *(needs or ()), limit]
    if not pg:
        rows = [d.load(r) for r in await d.fetch(sql, params)]
        if rows:
            await insert_events(
                tx, [(r["id"], r["last_seq"], "status", event, r["attempt"], now) for r in rows]
            )
        found = await agents(tx, {r["agent"] for r in rows if r["agent"]})
        return _ready((rows, {a["name"]: a for a in found}))
    params += [d.json(event), now]
    take = await d.send(sql, params)
    load = d.load

    async def read() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        by_name: dict[str, dict[str, Any]] = {}
        width = len(COLS)
        for r in await take():
            rows.append(load(r[:width]))
            name = r[width + _AGENT_NAME]
            if name is not None and name not in by_name:
                by_name[name] = load(r[width:], AGENTS)
        return rows, by_name

    return read


_AGENT_NAME = AGENTS.names.index("name")
_T = TypeVar("_T")


def _ready(value: _T) -> Callable[[], Awaitable[_T]]:
    """A reader of what is read already (SQLite runs a statement as it is sent)."""

    async def read() -> _T:
        return value

    return read


def _update(
    d: fd.SQLite | fd.Postgres,
    task_id: str,
    values: dict[str, Any],
    seq_plus: int,
    status: str | None,
    lease_hash: str | None,
    queues: Collection[str],
) -> tuple[str, list[Any]]:
    """The UPDATE of send_update_task_events (cached by its shape) and its parameters: set
    `values` and `last_seq += seq_plus` on the task if it is in `status` (any when None; and
    holds the lease `lease_hash`, on one of `queues`), returning the row after."""
    names = tuple(values)
    fence = lease_hash is not None
    key = ("update", d.ph, names, status is not None, fence, len(queues))
    sql = fd.statements.get(key)
    if sql is None:
        sets = "".join(f"{n} = ?, " for n in names)
        where = "id = ?" + (" AND status = ?" if status is not None else "")
        where += " AND lease_token_hash = ?" if fence else ""
        if queues:
            where += f" AND queue IN ({', '.join('?' for _ in queues)})"
        sql = fd.statements[key] = fd.sql(
            d, f"UPDATE tasks SET {sets}last_seq = last_seq + ? WHERE {where} RETURNING {RETURNING}"
        )
    params = [*fd.bind(d, names, values), seq_plus, task_id]
    if status is not None:
        params.append(status)
    if fence:
        params.append(lease_hash)
    params.extend(sorted(queues))
    return sql, params


Events = Sequence[tuple[str, Any]]
EventRow = tuple[str, int, str, Any, int, datetime]


async def send_update_task_events(
    tx: Tx,
    task_id: str,
    values: dict[str, Any],
    events: Events,
    now: datetime,
    *,
    status: str | None,
    lease_hash: str | None = None,
    queues: Collection[str] = (),
) -> Callable[[], Awaitable[tuple[dict[str, Any], list[EventRow]] | None]]:
    """Set `values` and take a seq for each of `events` ((kind, data), non-empty) on the
    task (if it is in `status`, holds the lease `lease_hash`, on one of `queues`), and write
    the events as those seqs at `now`. Sent: await what this returns for the row after and
    the event rows, or None when nothing matched (and nothing was written). On PostgreSQL a
    worker's reports are sent one after another and read after the claim that follows
    them, so a batch of them costs no round trip of its own."""
    d = await fd.driver(tx)
    n = len(events)
    sql, params = _update(d, task_id, values, n, status, lease_hash, queues)
    if isinstance(d, fd.Postgres):
        # One statement (a data-modifying WITH): the events' seqs come from the UPDATE's
        # new last_seq, the events as one JSON document of [kind, data] pairs (one statement
        # text for any batch; an array of JSON values psycopg would quote element by element
        # in Python: store.completions).
        key = ("update_events", sql)
        with_events = fd.statements.get(key)
        if with_events is None:
            with_events = fd.statements[key] = (
                f"WITH u AS ({sql}), e AS (INSERT INTO task_events ({', '.join(EVENT_COLS)}) "
                "SELECT u.id, u.last_seq - %s + t.k, t.ev->>0, t.ev->1, u.attempt, %s "
                "FROM u, json_array_elements(%s::json) WITH ORDINALITY AS t(ev, k)) "
                f"SELECT {RETURNING} FROM u"
            )
        params += [n, now, d.json([[k, v] for k, v in events])]
        take = await d.send(with_events, params)
        pg = d

        async def read() -> tuple[dict[str, Any], list[EventRow]] | None:
            found = await take()
            if not found:
                return None
            row = pg.load(found[0])
            return row, event_rows(task_id, row["last_seq"], row["attempt"], now, events)

        return read
    found = await d.fetch(sql, params)
    out: tuple[dict[str, Any], list[EventRow]] | None = None
    if found:
        row = d.load(found[0])
        rows = event_rows(task_id, row["last_seq"], row["attempt"], now, events)
        await insert_events(tx, rows)
        out = row, rows

    async def ran() -> tuple[dict[str, Any], list[EventRow]] | None:
        return out

    return ran


def event_rows(task_id: str, last: int, attempt: int, now: datetime, events: Events) -> list[EventRow]:
    """`events` ((kind, data)) as task_events rows of seqs `last - len + 1 .. last`."""
    first = last - len(events) + 1
    return [(task_id, first + i, kind, data, attempt, now) for i, (kind, data) in enumerate(events)]


async def agents(tx: Tx, keys: Collection[str], *, by_id: bool = False) -> list[dict[str, Any]]:
    """The agents named in `keys` (by name, and by id too with `by_id`), as rows."""
    if not keys:
        return []
    d = await fd.driver(tx)
    keys = sorted(keys)
    marks = ", ".join("?" for _ in keys)
    where = f"name IN ({marks})" + (f" OR id IN ({marks})" if by_id else "")
    key = ("agents", d.ph, len(keys), by_id)
    sql = fd.statements.get(key)
    if sql is None:
        sql = fd.statements[key] = fd.sql(d, f"SELECT {AGENTS.listed} FROM agents WHERE {where}")
    rows = await d.fetch(sql, [*keys, *keys] if by_id else keys)
    return [d.load(r, AGENTS) for r in rows]


async def agent_routing(tx: Tx, key: str) -> tuple[str, str | None, dict[str, Any]] | None:
    """(name, default queue, requires) of the agent named or with the id `key`: all a new
    task needs of it (the whole row's ~15 JSON columns cost more to load than the query).

    In a fast_tx on PostgreSQL, an agent asked for by name is read once per process
    (`routes`) and then taken from there without a statement: the task's insert checks in
    the same statement that the row still says so (insert_task), and if it does not, the
    transaction fails as a whole and runs again in a full one, which reads the row. A round
    trip fewer per creation, half of them while a worker waits for the task (issue #15);
    edits of agents, rare, cost the one creation that meets them a rerun."""
    cache = routes(tx.db) if tx.raw is not None and not tx.db.is_sqlite else None
    if cache is not None and (hit := cache.get(key)) is not None:
        name, queue, requires, text = hit
        tx.route = (name, queue, text)
        tx.stale = functools.partial(_forget, cache)
        return name, queue, requires
    d = await fd.driver(tx)
    sql_key = ("agent_routing", d.ph)
    sql = fd.statements.get(sql_key)
    if sql is None:
        # `requires` as its text: the check compares it as stored (a json column's text).
        requires_col = "requires::text" if isinstance(d, fd.Postgres) else "requires"
        sql = fd.statements[sql_key] = fd.sql(
            d,
            f"SELECT name, default_queue, {requires_col} FROM agents WHERE name = ? OR id = ? "
            "ORDER BY name = ? DESC",
        )
    rows = await d.fetch(sql, [key, key, key])
    if not rows:
        return None
    name, queue, text = rows[0]
    loaded: dict[str, Any] = (json.loads(text) if isinstance(text, str) else text) or {}
    if cache is not None and name == key:  # by id: not worth the care (an id can be a name)
        if len(cache) >= _ROUTES_KEPT:
            cache.clear()
        cache[key] = (name, queue, loaded, text)
    return name, queue, loaded


# Agents' routes as this process last read them, per database: name -> (name, default queue,
# requires, requires as stored). Bounded: past this many, it starts again empty.
_ROUTES_KEPT = 1000
_routes: weakref.WeakKeyDictionary[Database, dict[str, tuple[str, str | None, dict[str, Any], str]]] = (
    weakref.WeakKeyDictionary()
)


def routes(db: Database) -> dict[str, tuple[str, str | None, dict[str, Any], str]]:
    """The agents' routes this process has cached for `db` (see agent_routing)."""
    found = _routes.get(db)
    if found is None:
        found = _routes[db] = {}
    return found


def _forget(cache: dict[str, Any], exc: BaseException) -> bool:
    """Whether `exc` is a route check failing (`_CREATE_CHECKED`: the only division of the
    transaction); if so the cache goes, whole: the error does not say which agent's route
    it was when a transaction created tasks for several, and edits are rare."""
    from psycopg import errors as pg_errors

    if isinstance(exc, pg_errors.DivisionByZero):
        cache.clear()
        return True
    return False


# The audit log's row (store/audit.py), written beside every task creation.
AUDIT_COLS = ("id", "at", "actor", "actor_kind", "source", "action", "target_kind", "target_id", "details")


async def insert_audit(tx: Tx, row: Sequence[Any]) -> None:
    """One `audit_log` row, its values in `AUDIT_COLS` order; in the same statement as a
    task's creation held by insert_task (PostgreSQL), if one is."""
    held = tx.held
    audited = _AUDITED.get(held[0]) if held is not None else None
    if held is not None and audited is not None:
        # Held with it: sent at the commit, or before the next statement (_driver, which
        # is why insert_task's driver is taken as it is).
        d = tx.driver
        tx.held = (audited, [*held[1], row[0], d.time(row[1]), *row[2:8], d.json(row[8])])
        return
    d = await fd.driver(tx)
    key = ("insert_audit", d.ph)
    sql = fd.statements.get(key)
    if sql is None:
        cols, marks = ", ".join(AUDIT_COLS), ", ".join("?" for _ in AUDIT_COLS)
        sql = fd.statements[key] = fd.sql(d, f"INSERT INTO audit_log ({cols}) VALUES ({marks})")
    await d.run(sql, [row[0], d.time(row[1]), *row[2:8], d.json(row[8])])


def _with_audit(create: bytes, first: int) -> bytes:
    """`create` and the audit row's INSERT, its parameters from `$first` on."""
    cols, marks = ", ".join(AUDIT_COLS), _dollars(first, len(AUDIT_COLS))
    return create + f", a AS (INSERT INTO audit_log ({cols}) VALUES ({marks}))".encode()


# A held creation -> the same with its audit row.
_AUDITED = {
    _CREATE: _with_audit(_CREATE, len(COLS) + 2),
    _CREATE_CHECKED: _with_audit(_CREATE_CHECKED, len(COLS) + 5),
}


def held_creation(sql: bytes) -> tuple[str | None, str] | None:
    """For a creation as insert_task and insert_audit hold it (Tx.held), its parts besides
    the task's and its event's INSERTs, which store/born.py writes otherwise: the route's
    check (a `g` CTE, or None) and the audit row's CTE (`, a AS (...)`, or "")."""
    return _HELD_PARTS.get(sql)


_HELD_PARTS: dict[bytes, tuple[str | None, str]] = {
    _CREATE: (None, ""),
    _CREATE_CHECKED: (_ROUTE_CHECK, ""),
    _AUDITED[_CREATE]: (None, _with_audit(b"", len(COLS) + 2).decode()),
    _AUDITED[_CREATE_CHECKED]: (_ROUTE_CHECK, _with_audit(b"", len(COLS) + 5).decode()),
}


async def bump_running(
    tx: Tx,
    items: Sequence[tuple[str, int, str, str | None]],
    now: datetime,
    queues: Collection[str] = (),
) -> dict[str, tuple[int, int, bool]]:
    """For each (task id, n, lease hash, phase) of `items` whose task is running under that
    lease (on one of `queues`), `last_seq += n` and `phase` set when given, in ONE UPDATE;
    {task id: (last_seq, attempt, cancel_requested)} of the tasks it moved. A streaming
    worker's post carries a few events for each of dozens of tasks: a statement each cost
    more than the rows. Ids must be distinct: a task listed twice would move once."""
    d = await fd.driver(tx)
    if isinstance(d, fd.Postgres):
        # The items as four arrays: one statement text (prepared once) for any post.
        only = " AND tasks.queue = ANY(%s)" if queues else ""
        sql = (
            "UPDATE tasks SET last_seq = tasks.last_seq + b.n, updated_at = %s, "
            "phase = COALESCE(b.phase, tasks.phase) "
            "FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[]) AS b(id, n, h, phase) "
            f"WHERE tasks.id = b.id AND tasks.status = 'running' AND tasks.lease_token_hash = b.h{only} "
            "RETURNING tasks.id, tasks.last_seq, tasks.attempt, tasks.cancel_requested"
        )
        columns = [list(c) for c in zip(*items, strict=True)]
        params: list[Any] = [now, *columns, *([sorted(queues)] if queues else [])]
    else:
        key = ("bump_running", len(items), len(queues))
        sql = fd.statements.get(key)
        if sql is None:
            rows = ", ".join("(?, ?, ?, ?)" for _ in items)
            only = f" AND tasks.queue IN ({', '.join('?' for _ in queues)})" if queues else ""
            sql = fd.statements[key] = (
                "UPDATE tasks SET last_seq = tasks.last_seq + b.column2, updated_at = ?, "
                "phase = COALESCE(b.column4, tasks.phase) "
                f"FROM (VALUES {rows}) AS b WHERE tasks.id = b.column1 AND tasks.status = 'running' "
                f"AND tasks.lease_token_hash = b.column3{only} "
                "RETURNING tasks.id, tasks.last_seq, tasks.attempt, tasks.cancel_requested"
            )
        params = [d.time(now), *(v for item in items for v in item), *sorted(queues)]
    return {r[0]: (int(r[1]), int(r[2]), bool(r[3])) for r in await d.fetch(sql, params)}
