"""An exchange's completions on PostgreSQL (store.completions) read the reported tasks by id,
not every running task."""

from __future__ import annotations

from typing import Any

import pytest

from store import fastdriver as fd
from store import tasks
from store.db import Database
from store.leases import Lease
from tests.store.plans import generic_plan, reads_only_its_own
from tests.store.test_completions import _claimed

PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@PG
async def test_completions_read_their_tasks_not_every_running_one(
    db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exchange's two reports come as a JSON document, which PostgreSQL takes for 100
    rows whatever it holds: it joined them to the tasks by hashing every running task (an
    index scan of them all, per exchange), beside 3,000 running tasks here."""
    sent: list[tuple[bytes, list[Any]]] = []
    real = fd.Postgres.send

    async def spy(self: fd.Postgres, sql: str | bytes, params: Any) -> Any:
        text = sql if isinstance(sql, bytes) else sql.encode()
        if b"json_to_recordset" in text:
            sent.append((text, list(params)))
        return await real(self, sql, params)

    a, b, _ = await _claimed(db, 2)
    monkeypatch.setattr(fd.Postgres, "send", spy)
    reports = [tasks.Report(c.task.id, Lease(c.token, ("q",)), result={"ok": True}) for c in (a, b)]

    async def complete(tx: Any) -> Any:
        return await (await tasks.send_reports(tx, reports))()

    await db.fast_or_full(complete)
    ((sql, params),) = sent
    marks = sql.split(b"%s")  # psycopg's placeholders, as PREPARE's
    sql = marks[0] + b"".join(b"$%d" % i + part for i, part in enumerate(marks[1:], 1))
    on_tasks = generic_plan(db_url, sql, params, crowd=(a.task.id, "q", "running"), rows=3000)
    assert reads_only_its_own(on_tasks)
