"""The audit log (admin) and executions by date range: list, and export as a stream.

- `GET /audit`: a page, newest first (filters: actor, action, target, since, until).
- `GET /audit/export?format=jsonl|csv`: every matching entry, oldest first, streamed.
- `GET /tasks/history`: the board's History view, a page of a date range's executions.
- `GET /tasks/export?format=jsonl`: those executions with their events, one per line.

Exports are read in batches as the response is written, so their memory is one batch
whatever the range (store/audit.py, store/history.py). This router is included before the
tasks router: `/tasks/export` must not be taken for a task id.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from board_api import wire
from board_api.deps import Admin, DbDep, Viewer
from board_api.routes.tasks import StatusQ, split_statuses
from kernel import errors
from sdk.audit import CSV_COLUMNS, AuditOut, AuditPage
from sdk.schemas import TaskPage
from store import audit, history
from store.audit_models import AuditEntry
from store.db import Database

router = APIRouter()

Short = Annotated[str | None, Query(max_length=64)]
Long = Annotated[str | None, Query(max_length=200)]
When = Annotated[datetime | None, Query(description="ISO 8601; without a zone it is UTC")]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=64)]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant
        raise errors.Invalid(f"{value.isoformat()} is out of range", code="invalid_time") from None


def _filter(
    actor: str | None,
    action: str | None,
    target_kind: str | None,
    target_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> audit.AuditFilter:
    return audit.AuditFilter(actor, action, target_kind, target_id, _utc(since), _utc(until))


def audit_out(e: AuditEntry) -> AuditOut:
    return AuditOut.model_validate(e, from_attributes=True)


@router.get("/audit", response_model=AuditPage)
async def list_audit(
    db: DbDep,
    _: Admin,
    actor: Long = None,
    action: Short = None,
    target_kind: Short = None,
    target_id: Long = None,
    since: When = None,
    until: When = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AuditPage:
    """Who did what, newest first; `action` may end in `*` (`task.*`); page with `cursor`."""
    f = _filter(actor, action, target_kind, target_id, since, until)
    async with db.read() as s:
        items, nxt = await audit.list_entries(s, f, limit=limit, cursor=cursor)
    return AuditPage(items=[audit_out(e) for e in items], next_cursor=nxt)


@router.get("/audit/export", responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}})
async def export_audit(
    db: DbDep,
    _: Admin,
    format: Literal["jsonl", "csv"] = "jsonl",
    actor: Long = None,
    action: Short = None,
    target_kind: Short = None,
    target_id: Long = None,
    since: When = None,
    until: When = None,
) -> StreamingResponse:
    """Every matching entry, oldest first, as JSON lines or CSV (with a header row)."""
    f = _filter(actor, action, target_kind, target_id, since, until)
    audit.check_range(f)  # refused now (a 4xx), not half-way through a 200
    body = _audit_csv(db, f) if format == "csv" else _audit_jsonl(db, f)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = f"audit.{format}"
    return StreamingResponse(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


async def _audit_jsonl(db: Database, f: audit.AuditFilter) -> AsyncIterator[bytes]:
    async for e in audit.iter_entries(db, f):
        yield audit_out(e).model_dump_json().encode() + b"\n"


async def _audit_csv(db: Database, f: audit.AuditFilter) -> AsyncIterator[bytes]:
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(CSV_COLUMNS)
    async for e in audit.iter_entries(db, f):
        row = audit_out(e).model_dump(mode="json")
        row["details"] = json.dumps(row["details"], separators=(",", ":"), sort_keys=True)
        out.writerow([row[c] for c in CSV_COLUMNS])
        if buf.tell() > 64_000:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


@router.get("/tasks/history", response_model=TaskPage)
async def task_history(
    db: DbDep,
    _: Viewer,
    since: When = None,
    until: When = None,
    status: StatusQ = None,
    agent: Short = None,
    source: Short = None,
    failure: Short = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TaskPage:
    """Executions created in [since, until), newest first, filtered; page with `cursor`."""
    rng = history.Range(_utc(since), _utc(until))
    items, nxt = await history.list_executions(
        db,
        rng,
        limit=limit,
        cursor=cursor,
        status=split_statuses(status),
        agent=agent,
        source=source,
        failure=failure,
    )
    return TaskPage(items=[wire.task_out(t) for t in items], next_cursor=nxt)


@router.get("/tasks/export", responses={200: {"content": {"application/x-ndjson": {}}}})
async def export_tasks(
    db: DbDep,
    _: Viewer,
    format: Literal["jsonl"] = "jsonl",
    since: When = None,
    until: When = None,
    status: StatusQ = None,
    agent: Short = None,
    source: Short = None,
    failure: Short = None,
) -> StreamingResponse:
    """Executions created in [since, until), oldest first, each with its events: one JSON
    object per line, `{"task": {...}, "events": [...]}`."""
    rng = history.Range(_utc(since), _utc(until))
    filters: dict[str, Any] = {
        "status": split_statuses(status),
        "agent": agent,
        "source": source,
        "failure": failure,
    }
    # Refused now (a 4xx), not half-way through a 200: the range and the filters' values.
    rng.check()
    await history.list_executions(db, rng, limit=1, **filters)

    async def lines() -> AsyncIterator[bytes]:
        async for task, events in history.iter_executions(db, rng, **filters):
            item = {
                "task": wire.task_out(task).model_dump(mode="json"),
                "events": [wire.event_out(e).model_dump(mode="json") for e in events],
            }
            yield json.dumps(item, separators=(",", ":")).encode() + b"\n"

    disposition = 'attachment; filename="executions.jsonl"'
    return StreamingResponse(
        lines(), media_type="application/x-ndjson", headers={"Content-Disposition": disposition}
    )
