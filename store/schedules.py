"""Schedules: tasks started by the clock instead of by a person.

A schedule names an agent, a prompt and a cron expression read in an IANA time zone. Every
control-plane process runs `run_ticker`; it sleeps until the earliest `next_run_at` (at most
`poll` seconds, or until a schedule changes) and calls `fire_due`. A due schedule is claimed
in the database like a task: selected `FOR UPDATE SKIP LOCKED` on PostgreSQL, then moved on
by a conditional UPDATE from the `next_run_at` that was read. Only one process can win that
UPDATE, so any number of replicas start exactly one task per due time. (SQLite ignores SKIP
LOCKED; there the write lock of `Database.tx()` serialises the tickers, and the conditional
UPDATE still refuses the second.)

Cron times are wall-clock times in the schedule's zone, so daylight saving time is handled
the way a person expects: a time that does not exist that day (02:30 when clocks jump from
02:00 to 03:00) fires once, at the first instant after the jump; a time that happens twice
(02:30 when clocks fall back) fires once, at its first occurrence. See `next_after`.

`notify` (`parse_notify`): a run of a schedule with `slack:#ops` is bound to that channel in
the transaction that starts it (`store.slack.bind_channel`); the Slack relay posts it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from croniter import CroniterError, croniter
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from kernel import errors
from store import catalog
from store import slack as slack_store
from store import tasks as task_service
from store.db import Database, Tx
from store.models import TERMINAL, Task, utcnow
from store.schedule_models import CATCHUP, OVERLAP, Schedule

__all__ = [
    "MISSED_AFTER",
    "TOPIC",
    "Fired",
    "NewSchedule",
    "create_schedule",
    "delete_schedule",
    "earliest_due",
    "fire_due",
    "get_schedule",
    "last_task_statuses",
    "list_schedules",
    "next_after",
    "notify_states",
    "parse_notify",
    "parse_zone",
    "pause",
    "resume",
    "run_ticker",
    "validate_cron",
]

log = logging.getLogger(__name__)

# Hub topic: a schedule was created, paused, resumed, deleted or fired (tickers re-plan).
TOPIC = "schedules"
# A due time later than this when a ticker reaches it was missed (every control plane was
# down): the schedule's `catchup` policy decides whether it still runs, once.
MISSED_AFTER = timedelta(seconds=60)
MAX_CRON_CHARS = 120
# Notify targets: a Slack channel by name (lowercase letters, digits, - and _, at most 80, as
# Slack allows) or by id (C0123ABCD; G... private, D... direct message).
SLACK_TARGET = re.compile(r"^slack:(#[a-z0-9_\-]{1,80}|[CGD][A-Z0-9]{1,31})$")
NOTIFY_FORMS = "slack:#channel-name or slack:CHANNEL_ID (e.g. slack:#ops, slack:C0123ABCD)"
_TERMINAL = {s.value for s in TERMINAL}
_sched = Schedule.__table__


@dataclass
class NewSchedule:
    name: str
    agent: str
    prompt: str
    cron: str
    timezone: str = "UTC"
    queue: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict[str, Any])
    catchup: str = "once"
    overlap: str = "skip"
    paused: bool = False
    created_by: str | None = None
    notify: list[str] = field(default_factory=list[str])


@dataclass
class Fired:
    """What one due time of one schedule did."""

    schedule: str  # the schedule's name
    due: datetime
    outcome: str  # started | skipped_overlap | skipped_missed | cancelled_previous | failed
    task_id: str | None = None
    error: str | None = None
    notify_error: str | None = None  # the run started, but could not be posted where asked


def _invalid(field_name: str, message: str, code: str) -> errors.Invalid:
    return errors.Invalid(message, code=code, field=field_name)


def parse_zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (e.g. Europe/Berlin), or a 422 naming the `timezone` field."""
    try:
        if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _invalid(
            "timezone",
            f"timezone {name!r} is not a known IANA time zone (e.g. Europe/Berlin, UTC)",
            "invalid_timezone",
        ) from exc


def validate_cron(expr: str) -> str:
    """A five-field cron expression (minute hour day month weekday) or an alias such as
    `@daily`; anything else is a 422 naming the `cron` field."""
    expr = " ".join(expr.split())
    fields = expr.split(" ")
    ok = (
        0 < len(expr) <= MAX_CRON_CHARS
        and (len(fields) == 5 or (len(fields) == 1 and expr.startswith("@")))
        and croniter.is_valid(expr)
    )
    if not ok:
        raise _invalid(
            "cron",
            f"cron {expr!r} is not a valid five-field cron expression "
            '(minute hour day-of-month month day-of-week, e.g. "0 8 * * 1-5")',
            "invalid_cron",
        )
    return expr


def next_after(cron: str, zone: str, after: datetime) -> datetime:
    """The first due time strictly after `after` (aware), as an aware UTC datetime.

    Candidates are wall-clock times in `zone`; each maps to an instant with `fold=0`. In a
    spring-forward gap that instant lies just after the jump (02:30 with the pre-jump offset),
    so the run is late, not lost; in a fall-back hour it is the first occurrence, and the
    repeat of that wall time maps to an instant already passed, so it never fires twice.
    """
    tz = parse_zone(zone)
    wall = after.astimezone(tz).replace(tzinfo=None)
    try:
        it = croniter(cron, wall)
        # A gap maps several wall times onto instants already passed; a few thousand
        # candidates cover the longest (an every-minute schedule across a one-hour jump).
        for _ in range(5000):
            # The stubs leave one overload's argument untyped; the result is a datetime.
            candidate: datetime = it.get_next(datetime)  # pyright: ignore[reportUnknownMemberType]
            when = candidate.replace(tzinfo=tz, fold=0).astimezone(UTC)
            if when > after:
                return when
    except (CroniterError, ValueError, OverflowError) as exc:  # CroniterError is a ValueError
        raise _invalid("cron", f"cron {cron!r} never falls due", "invalid_cron") from exc
    raise _invalid("cron", f"cron {cron!r} never falls due", "invalid_cron")


def parse_notify(targets: list[str]) -> list[str]:
    """Where a schedule's runs are posted, checked: today one Slack channel, `slack:#name` or
    `slack:CHANNEL_ID` (a run's progress is a thread, and a thread lives in one channel).
    Anything else is a 422 naming the `notify` field."""
    out: list[str] = []
    for raw in targets:
        target = raw.strip()
        if not SLACK_TARGET.match(target):
            raise _invalid("notify", f"notify target {raw[:100]!r} is not {NOTIFY_FORMS}", "invalid_notify")
        if target not in out:
            out.append(target)
    if len(out) > 1:
        raise _invalid(
            "notify",
            f"notify names {len(out)} targets; a schedule posts its runs to one Slack channel",
            "invalid_notify",
        )
    return out


def _check(new: NewSchedule) -> None:
    catalog.check_slug("schedule", new.name)
    if new.catchup not in CATCHUP:
        raise _invalid("catchup", f"catchup must be one of {', '.join(CATCHUP)}", "invalid_catchup")
    if new.overlap not in OVERLAP:
        raise _invalid("overlap", f"overlap must be one of {', '.join(OVERLAP)}", "invalid_overlap")
    new.cron = validate_cron(new.cron)
    parse_zone(new.timezone)
    new.notify = parse_notify(new.notify)


async def _known(tx: Tx, what: str, key: str) -> str:
    """The name of an existing agent or queue; a 422 naming the field when there is none (a
    schedule that names nothing would fail at every due time instead of now)."""
    try:
        if what == "agent":
            return (await catalog.get_agent(tx.session, key)).name
        return (await catalog.get_queue(tx.session, key)).name
    except errors.NotFound as exc:
        raise _invalid(what, f"{what} {key!r} does not exist", f"unknown_{what}") from exc


async def create_schedule(tx: Tx, new: NewSchedule, *, max_prompt_chars: int = 100_000) -> Schedule:
    """Validate and insert a schedule; its first run is the next due time after now."""
    _check(new)
    if len(new.prompt) > max_prompt_chars:
        raise _invalid("prompt", f"prompt is longer than {max_prompt_chars} characters", "prompt_too_long")
    if len(json.dumps(new.parameters, default=str)) > max_prompt_chars:
        raise _invalid("parameters", "parameters are too large", "parameters_too_large")
    agent = await _known(tx, "agent", new.agent)
    queue = await _known(tx, "queue", new.queue) if new.queue else None
    taken = await tx.execute(select(col(Schedule.id)).where(col(Schedule.name) == new.name))
    if taken.first() is not None:
        raise errors.Conflict(f"a schedule named {new.name!r} already exists", code="schedule_exists")
    now = utcnow()
    row = Schedule(
        name=new.name,
        agent=agent,
        queue=queue,
        prompt=new.prompt,
        parameters=new.parameters,
        cron=new.cron,
        timezone=new.timezone,
        catchup=new.catchup,
        overlap=new.overlap,
        paused=new.paused,
        notify=new.notify,
        next_run_at=None if new.paused else next_after(new.cron, new.timezone, now),
        created_by=new.created_by,
        created_at=now,
        updated_at=now,
    )
    tx.session.add(row)
    await tx.session.flush()
    tx.notify(TOPIC, row.id)
    return row


async def get_schedule(session: AsyncSession, key: str) -> Schedule:
    """A schedule by id or name."""
    stmt = select(Schedule).where(sa.or_(col(Schedule.id) == key, col(Schedule.name) == key))
    row = (await session.execute(stmt)).scalars().first()
    if row is None:
        raise errors.NotFound(f"schedule {key!r} not found", code="schedule_not_found")
    return row


def _cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _after(cursor: str) -> str:
    try:
        name = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Invalid("cursor is not one this server issued", code="invalid_cursor") from exc
    if not catalog.SLUG.match(name):  # cursors are schedule names
        raise errors.Invalid("cursor is not one this server issued", code="invalid_cursor")
    return name


async def list_schedules(
    session: AsyncSession, *, limit: int = 100, cursor: str | None = None
) -> tuple[list[Schedule], str | None]:
    """Schedules by name; returns (page, next_cursor)."""
    if not 1 <= limit <= 200:
        raise errors.Invalid("limit must be between 1 and 200", code="invalid_limit")
    stmt = select(Schedule).order_by(col(Schedule.name)).limit(limit + 1)
    if cursor:
        stmt = stmt.where(col(Schedule.name) > _after(cursor))
    rows = list((await session.execute(stmt)).scalars().all())
    nxt = _cursor(rows[limit - 1].name) if len(rows) > limit else None
    return rows[:limit], nxt


async def last_task_statuses(session: AsyncSession, rows: list[Schedule]) -> dict[str, str]:
    """Status of each schedule's last task, by task id (one query for a page)."""
    ids = [r.last_task_id for r in rows if r.last_task_id]
    if not ids:
        return {}
    found = await session.execute(select(col(Task.id), col(Task.status)).where(col(Task.id).in_(ids)))
    return {tid: status for tid, status in found.all()}


async def _locked(tx: Tx, key: str) -> Schedule:
    row = await get_schedule(tx.session, key)
    await tx.execute(select(col(Schedule.id)).where(col(Schedule.id) == row.id).with_for_update())
    await tx.session.refresh(row)
    return row


async def notify_states(session: AsyncSession, rows: list[Schedule]) -> dict[str, str]:
    """How each schedule's last run was posted where `notify` asks, by schedule id:
    `posting` (the relay has not posted it yet), `posted`, `failed: <Slack error>`, or
    `not delivered: <why>` (e.g. Slack is not configured). Schedules without `notify` or
    without a run are left out."""
    asked = [r for r in rows if r.notify and r.last_task_id]
    bindings = await slack_store.bindings_of(session, [r.last_task_id for r in asked if r.last_task_id])
    out: dict[str, str] = {}
    for r in asked:
        b = bindings.get(r.last_task_id or "")
        if b is None:
            out[r.id] = f"not delivered: {r.notify_error}" if r.notify_error else "not delivered"
        elif b.status == "failed":
            out[r.id] = f"failed: {b.error or 'unknown error'}"
        else:
            out[r.id] = "posted" if b.thread_ts else "posting"
    return out


async def pause(tx: Tx, key: str) -> Schedule:
    """Stop starting tasks (idempotent); tasks already started are left alone."""
    row = await _locked(tx, key)
    if not row.paused:
        row.paused, row.next_run_at, row.updated_at = True, None, utcnow()
        await tx.session.flush()
        tx.notify(TOPIC, row.id)
    return row


async def resume(tx: Tx, key: str) -> Schedule:
    """Start again from the next due time after now (idempotent): the times that passed
    while paused are not made up, since pausing meant not running them."""
    row = await _locked(tx, key)
    if row.paused:
        now = utcnow()
        row.paused, row.next_run_at, row.updated_at = False, next_after(row.cron, row.timezone, now), now
        await tx.session.flush()
        tx.notify(TOPIC, row.id)
    return row


async def delete_schedule(tx: Tx, key: str) -> None:
    """Remove a schedule; the tasks it started stay (their `schedule_id` still names it)."""
    row = await get_schedule(tx.session, key)
    await tx.execute(sa.delete(_sched).where(_sched.c.id == row.id))
    tx.notify(TOPIC, row.id)


async def earliest_due(session: AsyncSession) -> datetime | None:
    """When the next active schedule falls due (an indexed read), or None."""
    stmt = sa.select(sa.func.min(col(Schedule.next_run_at))).where(col(Schedule.paused) == sa.false())
    return (await session.execute(stmt)).scalar_one_or_none()


async def fire_due(
    tx: Tx,
    now: datetime | None = None,
    *,
    batch: int = 50,
    missed_after: timedelta = MISSED_AFTER,
    limits: dict[str, Any] | None = None,
    deliver: Collection[str] = (),
) -> list[Fired]:
    """Start the runs that are due at `now`, each exactly once across every replica.

    A due row is claimed by moving `next_run_at` from the value read to the next due time
    after `now` (so runs missed while everything was down collapse into this one); the
    `catchup` policy then says whether a missed run starts, and `overlap` what to do while
    the previous run is unfinished. `limits` go to `store.tasks.create_task`. `deliver`: the
    notify kinds this control plane can deliver ("slack" when Slack is configured); a run
    whose target cannot be delivered still starts, and says so in `notify_error`."""
    now = now or utcnow()
    stmt = (
        sa.select(_sched)
        .where(_sched.c.paused == sa.false(), _sched.c.next_run_at <= now)
        .order_by(_sched.c.next_run_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    fired: list[Fired] = []
    for row in (await tx.execute(stmt)).mappings().all():
        due: datetime = row["next_run_at"]
        try:
            nxt = next_after(row["cron"], row["timezone"], now)
        except errors.Invalid as exc:  # e.g. a zone withdrawn by an update of tzdata
            nxt, outcome = None, Fired(row["name"], due, "failed", error=exc.detail)
        else:
            outcome = None
        claimed = await tx.execute(
            sa.update(_sched)
            .where(
                _sched.c.id == row["id"],
                _sched.c.next_run_at == row["next_run_at"],
                _sched.c.paused == sa.false(),
            )
            .values(next_run_at=nxt, updated_at=now)
            .returning(_sched.c.id)
        )
        if claimed.first() is None:
            continue  # another replica fired this due time
        if outcome is None:
            if now - due > missed_after and row["catchup"] == "skip":
                outcome = Fired(row["name"], due, "skipped_missed")
            else:
                outcome = await _run(tx, row, due, limits or {}, deliver)
        await _record(tx, row["id"], outcome, now)
        fired.append(outcome)
    return fired


async def _run(
    tx: Tx, row: sa.RowMapping, due: datetime, limits: dict[str, Any], deliver: Collection[str]
) -> Fired:
    """Apply the overlap policy and start the task, inside a savepoint: a run that cannot
    start (its agent was deleted since) is recorded as failed, and the schedule moves on.
    The task's Slack binding is made in the same savepoint: started means bound."""
    name = row["name"]
    previous = await _unfinished(tx, row["last_task_id"])
    if previous and row["overlap"] == "skip":
        return Fired(name, due, "skipped_overlap")
    try:
        async with tx.session.begin_nested():
            if previous and row["overlap"] == "cancel":
                await task_service.cancel(tx, previous, by=f"schedule {name}")
            new = task_service.NewTask(
                prompt=row["prompt"],
                agent=row["agent"],
                queue=row["queue"],
                parameters=dict(row["parameters"] or {}),
                source="schedule",
                requested_by=row["created_by"],
                schedule_id=row["id"],
            )
            task = await task_service.create_task(tx, new, **limits)
            undelivered = await _bind(tx, task.id, name, list(row["notify"] or []), deliver)
    except errors.MetaAgentError as exc:
        return Fired(name, due, "failed", error=exc.detail)
    outcome = "cancelled_previous" if previous and row["overlap"] == "cancel" else "started"
    return Fired(name, due, outcome, task_id=task.id, notify_error=undelivered)


async def _bind(tx: Tx, task_id: str, name: str, targets: list[str], deliver: Collection[str]) -> str | None:
    """Hand the run to the relays of its notify targets; why not, when one cannot be."""
    for target in targets:
        kind, _, dest = target.partition(":")
        if kind == "slack" and "slack" in deliver:
            await slack_store.bind_channel(tx, task_id, dest, schedule=name)
        else:
            # Only Slack exists today (parse_notify), so this is "Slack is not configured".
            return (
                f"Slack is not configured on the control plane that started the run; not posted to {target}"
            )
    return None


async def _unfinished(tx: Tx, task_id: str | None) -> str | None:
    if not task_id:
        return None
    status = (await tx.execute(select(col(Task.status)).where(col(Task.id) == task_id))).scalar_one_or_none()
    return task_id if status is not None and status not in _TERMINAL else None


async def _record(tx: Tx, schedule_id: str, fired: Fired, now: datetime) -> None:
    values: dict[str, Any] = {"last_outcome": fired.outcome, "last_error": fired.error}
    if fired.task_id:
        values.update(
            last_task_id=fired.task_id,
            last_run_at=now,
            runs=_sched.c.runs + 1,
            notify_error=fired.notify_error,
        )
    await tx.execute(sa.update(_sched).where(_sched.c.id == schedule_id).values(**values))
    tx.notify(TOPIC, schedule_id)


async def run_ticker(
    db: Database,
    stop: asyncio.Event,
    *,
    poll: float = 1.0,
    limits: dict[str, Any] | None = None,
    deliver: Collection[str] = (),
) -> None:
    """Fire due schedules until `stop` is set. Sleeps until the earliest due time, at most
    `poll` seconds (a schedule changed on another replica, or a clock jump, is seen within
    that), and wakes at once when a schedule changes in this process or, on PostgreSQL, on
    any replica (the `schedules` notification)."""
    while not stop.is_set():
        version = db.hub.version(TOPIC)
        delay = poll
        try:
            async with db.read() as s:
                due = await earliest_due(s)
            now = utcnow()
            if due is not None and due <= now:
                async with db.tx() as tx:
                    fired = await fire_due(tx, now, limits=limits, deliver=deliver)
                for f in fired:
                    log.info(
                        "schedule %s: %s%s",
                        f.schedule,
                        f.outcome,
                        f" (task {f.task_id})" if f.task_id else f": {f.error}" if f.error else "",
                        extra={"schedule": f.schedule, "task_id": f.task_id},
                    )
                    if f.notify_error:
                        log.warning(
                            "schedule %s: run %s not posted: %s",
                            f.schedule,
                            f.task_id,
                            f.notify_error,
                            extra={"schedule": f.schedule, "task_id": f.task_id},
                        )
                if fired:
                    continue  # re-plan at once: a full batch may have left more due
                # Nothing claimed: another replica holds the due rows; its commit notifies.
            elif due is not None:
                delay = min(poll, max((due - now).total_seconds(), 0.0))
        except errors.Unavailable:
            log.warning("schedule ticker: database unavailable")
        except Exception:
            log.exception("schedule ticker failed; will retry")
        if not stop.is_set():
            await db.hub.wait(TOPIC, version, delay, internal=True)
