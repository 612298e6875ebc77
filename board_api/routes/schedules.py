"""Schedules: tasks started by cron. Viewers read; operators and admins change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from board_api.auditing import Who
from board_api.deps import DbDep, Operator, SettingsDep, Viewer
from sdk.schedules import ScheduleCreate, ScheduleList, ScheduleOut
from store import schedules
from store.audit import record
from store.schedule_models import Schedule

router = APIRouter(tags=["schedules"])


def schedule_out(
    row: Schedule, last_status: str | None = None, last_notify: str | None = None
) -> ScheduleOut:
    return ScheduleOut.model_validate(
        {**row.model_dump(), "last_task_status": last_status, "last_notify": last_notify}
    )


async def _out(db: DbDep, row: Schedule) -> ScheduleOut:
    async with db.read() as s:
        statuses = await schedules.last_task_statuses(s, [row])
        notified = await schedules.notify_states(s, [row])
    return schedule_out(row, statuses.get(row.last_task_id or ""), notified.get(row.id))


@router.get("/schedules", response_model=ScheduleList)
async def list_schedules(
    db: DbDep,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ScheduleList:
    """Schedules by name, with their next and last run."""
    async with db.read() as s:
        rows, nxt = await schedules.list_schedules(s, limit=limit, cursor=cursor)
        statuses = await schedules.last_task_statuses(s, rows)
        notified = await schedules.notify_states(s, rows)
    items = [schedule_out(r, statuses.get(r.last_task_id or ""), notified.get(r.id)) for r in rows]
    return ScheduleList(items=items, next_cursor=nxt)


@router.post("/schedules", response_model=ScheduleOut, status_code=201)
async def create_schedule(
    body: ScheduleCreate, db: DbDep, settings: SettingsDep, p: Operator, who: Who
) -> ScheduleOut:
    """Create a schedule; its first run is the next due time of `cron` in `timezone`."""
    new = schedules.NewSchedule(**body.model_dump(), created_by=p.name if p.key_id else None)
    async with db.tx() as tx:
        row = await schedules.create_schedule(tx, new, max_prompt_chars=settings.max_prompt_chars)
        await record(tx, who, "schedule.create", "schedule", row.name, body.model_dump())
    return schedule_out(row)


@router.get("/schedules/{key}", response_model=ScheduleOut)
async def get_schedule(key: str, db: DbDep, _: Viewer) -> ScheduleOut:
    """One schedule by id or name."""
    async with db.read() as s:
        row = await schedules.get_schedule(s, key)
    return await _out(db, row)


@router.post("/schedules/{key}/pause", response_model=ScheduleOut)
async def pause_schedule(key: str, db: DbDep, _: Operator, who: Who) -> ScheduleOut:
    """Stop starting runs (idempotent); a running task is left alone."""
    async with db.tx() as tx:
        row = await schedules.pause(tx, key)
        await record(tx, who, "schedule.pause", "schedule", row.name)
    return await _out(db, row)


@router.post("/schedules/{key}/resume", response_model=ScheduleOut)
async def resume_schedule(key: str, db: DbDep, _: Operator, who: Who) -> ScheduleOut:
    """Start runs again from the next due time after now (missed times are not made up)."""
    async with db.tx() as tx:
        row = await schedules.resume(tx, key)
        await record(tx, who, "schedule.resume", "schedule", row.name)
    return await _out(db, row)


@router.delete("/schedules/{key}", status_code=204)
async def delete_schedule(key: str, db: DbDep, _: Operator, who: Who) -> Response:
    """Delete a schedule; the tasks it started are kept."""
    async with db.tx() as tx:
        await schedules.delete_schedule(tx, key)
        await record(tx, who, "schedule.delete", "schedule", key)
    return Response(status_code=204)
