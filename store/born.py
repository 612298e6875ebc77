"""A task created for a worker's parked claim, inserted already claimed.

store.handoff runs a parked claim in the transaction that creates a task for its queue.
Claiming it there is an UPDATE of the row the same transaction has just inserted:
PostgreSQL writes a second version of the row with its index entries, and the server pays
a claim's Python, on the path of every dispatch to an idle worker. While the creation is
still held unsent (store.fastpath.insert_task: a fast transaction's writes wait for the
next statement), its INSERT can write the row the claim would have left instead: the
values store.statemachine gives, and the claim's `running` status event as seq 2 beside
the creation's first. The same statement reads the agent's row for the worker's answer.

Only when the claim would have taken this task: it needs nothing (store/prereqs.py: the
worker's capabilities would decide), and no other task is pending on its queue (a claim
takes the oldest first), which the statement checks itself. When one is, it inserts the
task pending, exactly as the creation alone does, and the claimer claims on its own; that
queue's next hand-offs, for a second, go through the claim, which takes the tasks waiting
in the same transaction (store.handoff.Handoffs.crowded).

SQLite runs the INSERT at once, so there the claim is known before it: store.handoff sets
a `Claimant` on the transaction, statemachine.create asks it for the parked claim of the
task's queue, and `insert_claimed` checks for a task pending there and writes the row as
claimed with both events, or writes nothing. The UPDATE it saves moved the row's status,
lease and claim index entries a second time, and those pages went to the WAL with the
commit: a create-and-claim took ~370 µs where a creation alone took ~175 (fsync included).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.dialects import postgresql

from store import fastdriver as fd
from store.db import Tx
from store.fastdriver import AGENTS, COLS, EVENT_COLS
from store.fastpath import held_creation, insert_events, insert_task
from store.models import Task

__all__ = ["Claimant", "insert_claimed", "send"]

_PG = postgresql.dialect()
_AGENT_NAME = AGENTS.names.index("name")


@functools.cache
def _type(column: str) -> str:
    return str(Task.__table__.c[column].type.compile(dialect=_PG))


@functools.cache
def _sql(route_check: str | None, audit: str, n: int, claimed: tuple[str, ...]) -> bytes:
    """The creation held with `n` parameters, as claimed. Parameters n+1 on: the queue, the
    pending and the running status, the `claimed` columns' values, the claim's event data,
    its time and the agent's name. A claimed column takes its value or, when another task
    is pending, the creation's own (cast: a CASE of untyped parameters would be text)."""
    q, pending, running = n + 1, n + 2, n + 3
    at = {c: n + 4 + i for i, c in enumerate(claimed)}
    event, now, agent = (n + 4 + len(claimed) + i for i in range(3))
    exprs = ", ".join(
        f"CASE WHEN f.free THEN ${at[c]}::{_type(c)} ELSE ${i}::{_type(c)} END" if c in at else f"${i}"
        for i, c in enumerate(COLS, 1)
    )
    ctes = [route_check] if route_check else []
    ctes += [
        # Is a task pending on the queue? Read as one step down ix_tasks_claim: the first
        # (queue, status, id) after (queue, pending, ''), and is it this queue's pending one.
        # The generic plan PostgreSQL settles on for a prepared statement after a few runs
        # estimates matches from the columns' statistics, not the values: `NOT EXISTS (...)`
        # became a scan of the table (30 ms a creation beside 50,000 tasks pending on another
        # queue), and `... ORDER BY id LIMIT 1` a walk of the primary key (176 ms beside
        # 1,000,000 finished tasks), each expecting an early match. Ordered by the index's
        # own columns, with no equality for the planner to fold away, only that index serves.
        # Materialized: evaluated once, not once per column that asks it.
        f"f AS MATERIALIZED (SELECT coalesce((SELECT queue = ${q} AND status = ${pending} FROM tasks "
        f"WHERE (queue, status, id) > (${q}, ${pending}, '') ORDER BY queue, status, id LIMIT 1), false) "
        "IS NOT TRUE AS free)",
        f"t AS (INSERT INTO tasks ({', '.join(COLS)}) SELECT {exprs} FROM f "
        "RETURNING id, created_at, status, last_seq, attempt)",
        # The creation's first event as insert_task writes it (joined to the route's check,
        # which fails the statement when the cached route no longer holds), then the claim's.
        f"e AS (INSERT INTO task_events ({', '.join(EVENT_COLS)}) "
        f"SELECT t.id, 1, 'status', ${len(COLS) + 1}::json, 0, t.created_at FROM t"
        + (", g WHERE g.ok = 1" if route_check else "")
        + f" UNION ALL SELECT t.id, t.last_seq, 'status', ${event}::json, t.attempt, ${now}::timestamptz "
        f"FROM t WHERE t.status = ${running})",
    ]
    agent_cols = ", ".join("a." + c for c in AGENTS.names)
    return (
        f"WITH {', '.join(ctes)}{audit} SELECT t.status = ${running}, {agent_cols} "
        f"FROM t LEFT JOIN agents a ON a.name = ${agent}"
    ).encode()


async def send(
    tx: Tx,
    queue: str,
    agent: str | None,
    values: Mapping[str, Any],
    event: dict[str, Any],
    now: datetime,
    statuses: tuple[str, str],
) -> Callable[[], Awaitable[tuple[bool, dict[str, Any] | None]]] | None:
    """Send the creation held in `tx` as claimed with `values` (its claim's `event` at
    `now`; `statuses` = the pending and the running one); None when no creation is held.
    Sent: await what this returns for whether it was inserted claimed, and the agent's row."""
    held = tx.held
    parts = held_creation(held[0]) if held is not None else None
    d = tx.driver
    if held is None or parts is None or not isinstance(d, fd.Postgres):
        return None
    tx.held = None
    names = tuple(values)
    sql = _sql(*parts, len(held[1]), names)
    params = [*held[1], queue, *statuses, *(values[c] for c in names), d.json(event), now, agent]
    take = await d.send(sql, params)

    async def read() -> tuple[bool, dict[str, Any] | None]:
        (row,) = await take()
        if not row[0]:
            return False, None
        found = row[1 + _AGENT_NAME] is not None
        return True, fd.pg_load(row[1:], AGENTS) if found else None

    return read


class Claimant(Protocol):
    """A parked claim the task being created may be inserted claimed for (SQLite; Tx.claimant,
    store.handoff's). `take(queue)`: the claiming worker, its lease's hash and length, taking
    the claim parked on `queue` (None: none to take, or not born). statemachine.create sets
    `claimed` to the task as claimed once it has inserted it so, or `pending_first` when
    another task was pending on the queue (then it inserted it pending)."""

    claimed: Task | None
    pending_first: bool

    def take(self, queue: str) -> tuple[str, str, float] | None: ...


async def insert_claimed(
    tx: Tx, row: dict[str, Any], first: dict[str, Any], claim: dict[str, Any], now: datetime, pending: str
) -> bool:
    """SQLite: the task `row` (as claimed), its creation's status event `first` and its
    claim's `claim` (seq 2 at `now`); nothing, and False, when another task is `pending` on
    its queue, which a claim would take first."""
    d = await fd.driver(tx)
    key = ("born_pending", d.ph)
    sql = fd.statements.get(key)
    if sql is None:
        sql = fd.statements[key] = fd.sql(d, "SELECT 1 FROM tasks WHERE queue = ? AND status = ? LIMIT 1")
    if await d.fetch(sql, [row["queue"], pending]):
        return False
    await insert_task(tx, row, first)
    await insert_events(tx, [(row["id"], row["last_seq"], "status", claim, row["attempt"], now)])
    return True
