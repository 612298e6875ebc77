"""An event's data reads back as it was written, whichever path wrote it (store.fastpath's
own JSON encoding on SQLite, the driver's on PostgreSQL) and whichever reads it (the ORM,
the feeds' plain rows)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from store import fastpath
from store.db import Database
from store.events import list_after, rows_after
from store.models import utcnow
from tests.store.test_tasks import new_task, seed

DATA: dict[str, Any] = {
    "text": 'é ✓ \n "quoted" \\ \u0000',
    "t": 1764872000.123456,
    "third": 1 / 3,
    "big": 2**70,
    "neg": -0.0,
    "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}},
}
# JSON has no NaN; SQLite keeps Python's (json.dumps writes it), PostgreSQL refuses it.
SQLITE_ONLY: dict[str, Any] = {"nan": float("nan"), "inf": [float("inf"), float("-inf")]}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType, reportUnknownArgumentType]
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
    return a == b and type(a) is type(b)


async def test_event_data_written_by_the_fast_path_reads_back_the_same(db: Database) -> None:
    await seed(db)
    tid = await new_task(db)
    data = {**DATA, **(SQLITE_ONLY if db.is_sqlite else {})}
    async with db.fast_tx() as tx:
        await fastpath.insert_events(tx, [(tid, 2, "log", data, 1, utcnow())])
    async with db.read() as s:
        (row,) = await rows_after(s, tid, 1)
        (event,) = await list_after(s, tid, 1)
    assert same(data, row["data"]) and same(data, event.data)


async def test_a_batch_past_one_statement_is_stored_whole_and_in_order(db: Database) -> None:
    """On PostgreSQL a batch goes in multi-row INSERTs of at most 100 rows (600 parameters)."""
    await seed(db)
    tid = await new_task(db)
    now = utcnow()
    rows = [(tid, seq, "log", {"line": f"line {seq}", "t": seq / 7}, 1, now) for seq in range(2, 252)]
    async with db.fast_tx() as tx:
        await fastpath.insert_events(tx, rows)
    async with db.read() as s:
        stored = await rows_after(s, tid, 1)
    assert [(r["seq"], r["data"], r["created_at"]) for r in stored] == [(r[1], r[3], now) for r in rows]


async def test_plain_rows_are_the_orm_events_column_for_column(db: Database) -> None:
    """rows_after (on PostgreSQL the driver's own read, store.fastpath.events_after) gives
    what the ORM reads: the columns in order, the same values and types, UTC timestamps; a
    page is `limit` rows after `after`."""
    await seed(db)
    tid = await new_task(db)
    now = utcnow()
    rows = [(tid, seq, "message_delta", {**DATA, "n": seq}, 1, now) for seq in range(2, 12)]
    async with db.fast_tx() as tx:
        await fastpath.insert_events(tx, rows)
    async with db.read() as s:
        plain = await rows_after(s, tid, 3, limit=5)
        events = await list_after(s, tid, 3, limit=5)
    assert [r["seq"] for r in plain] == [4, 5, 6, 7, 8]
    for row, event in zip(plain, events, strict=True):
        assert list(row) == ["task_id", "seq", "kind", "data", "attempt", "created_at"]
        assert same(row, event.model_dump()) and row["created_at"].utcoffset() == timedelta(0)
