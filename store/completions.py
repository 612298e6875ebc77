"""An exchange's completions as one statement on PostgreSQL.

A busy worker's exchange carries a report per finished task (4 with `--concurrency 4`),
and each report was one statement: a fenced UPDATE with its events in a data-modifying
WITH (fastpath.send_update_task_events). Profiled under issue #15 (`perf` on the database
during `make bench-peers`), PostgreSQL's time per task was mostly per-statement work
(executor start-up, catalog lookups, plan checks) rather than rows, and on the control
plane each statement costs psycopg's own Python. Here the completions of one exchange are
one UPDATE ... FROM json_to_recordset(...) whose events go in the same statement, the fences
(status, lease, queues) the same per row as before, called by store.statemachine, which
keeps the rules. A row that does not match is missing from the
answer: its report is refused as before (store.statemachine reads why).

SQLite keeps a statement per report: in-process, a statement costs microseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from store import fastdriver as fd
from store.db import Tx
from store.fastdriver import COLS, EVENT_COLS

__all__ = ["Completion", "send_completions"]

# (task id, lease hash, result, usage or None, events as (kind, data), masked)
Completion = tuple[str, str, Any, dict[str, Any] | None, Sequence[tuple[str, Any]]]
Found = dict[str, tuple[dict[str, Any], list[tuple[str, int, str, Any, int, datetime]]]]


async def send_completions(
    tx: Tx,
    items: Sequence[Completion],
    values: dict[str, Any],
    now: datetime,
    *,
    status: str,
    queues: Collection[str] = (),
) -> Callable[[], Awaitable[Found]]:
    """Set `values` (the same for every task: the new status, its times) and each item's
    result (and usage, when given) on each task that is in `status` under the item's lease
    (on one of `queues`), with its events in its next seqs, all in ONE statement; sent:
    await what this returns for {task id: (row after, event rows)} of the tasks it moved.
    PostgreSQL only; ids must be distinct (a task listed twice would move once)."""
    d = await fd.driver(tx)
    assert isinstance(d, fd.Postgres), "send_completions is PostgreSQL's"
    names = tuple(values)
    key = ("completions", names, bool(queues))
    sql = fd.statements.get(key)
    if sql is None:
        sets = "".join(f"{n} = %s, " for n in names)
        only = " AND tasks.queue = ANY(%s)" if queues else ""
        sql = fd.statements[key] = (
            # The rows and the events as two JSON documents (json_to_recordset), not as
            # arrays: psycopg dumps an array of JSON values in Python, quoting and escaping
            # each element with a regex; one document is one call of pydantic's encoder.
            # PostgreSQL takes a function's rows for 100 whatever it returns, and joined them
            # to the tasks by hashing every running task: the LIMIT tells it how many.
            "WITH b AS (SELECT * FROM json_to_recordset(%s::json) AS b(id text, h text, result json, "
            "usage json, n int) LIMIT %s), "
            f"u AS (UPDATE tasks SET {sets}result = COALESCE(b.result, 'null'::json), "
            "usage = COALESCE(b.usage, tasks.usage), "
            "last_seq = tasks.last_seq + b.n FROM b WHERE tasks.id = b.id AND tasks.status = %s "
            f"AND tasks.lease_token_hash = b.h{only} "
            f"RETURNING {', '.join('tasks.' + c for c in COLS)}, b.n AS batch_n), "
            f"e AS (INSERT INTO task_events ({', '.join(EVENT_COLS)}) "
            "SELECT u.id, u.last_seq - u.batch_n + ev.k, ev.kind, ev.data, u.attempt, %s "
            "FROM u JOIN json_to_recordset(%s::json) AS ev(id text, k int, kind text, data json) "
            f"ON ev.id = u.id) SELECT {', '.join('u.' + c for c in COLS)} FROM u"
        )
    rows: list[dict[str, Any]] = []
    for task_id, lease_hash, result, usage, events in items:
        row = {"id": task_id, "h": lease_hash, "result": result, "n": len(events)}
        if usage is not None:  # absent, not JSON null: the task keeps the usage it has
            row["usage"] = usage
        rows.append(row)
    evs = [
        {"id": task_id, "k": k, "kind": kind, "data": data}
        for task_id, _, _, _, events in items
        for k, (kind, data) in enumerate(events, 1)
    ]
    params: list[Any] = [d.json(rows), len(rows), *fd.bind(d, names, values), status]
    if queues:
        params.append(sorted(queues))
    params += [now, d.json(evs)]
    take = await d.send(sql, params)
    events_of = {i[0]: i[4] for i in items}
    pg = d

    async def read() -> Found:
        out: Found = {}
        for r in await take():
            row = pg.load(r)
            task_id, events = row["id"], events_of[row["id"]]
            first = row["last_seq"] - len(events) + 1
            rows = [
                (task_id, first + k, kind, data, row["attempt"], now) for k, (kind, data) in enumerate(events)
            ]
            out[task_id] = (row, rows)
        return out

    return read
