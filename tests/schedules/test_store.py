"""Schedules in the store, on real SQLite and PostgreSQL: due times (DST included), the claim,
catch-up and overlap policies, pause and resume."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from kernel import errors
from store import schedules, tasks
from store.catalog import create_agent, create_queue
from store.db import Database
from store.models import Agent, Task, WorkerQueue, utcnow
from store.schedule_models import Schedule

BERLIN = "Europe/Berlin"


async def seed(db: Database) -> None:
    async with db.tx() as tx:
        await create_queue(tx, WorkerQueue(name="q1"))
        await create_agent(tx, Agent(name="echo", runtime="noop", default_queue="q1"))


async def make(db: Database, name: str = "nightly", **kw: object) -> Schedule:
    args: dict[str, object] = {"name": name, "agent": "echo", "prompt": "report", "cron": "0 8 * * 1-5"}
    args.update(kw)
    async with db.tx() as tx:
        return await schedules.create_schedule(tx, schedules.NewSchedule(**args))  # type: ignore[arg-type]


async def set_due(db: Database, name: str, when: datetime) -> None:
    """Make a schedule due at `when` (what the clock would do, without waiting for it)."""
    async with db.tx() as tx:
        await tx.execute(sa.update(Schedule).where(sa.column("name") == name).values(next_run_at=when))


async def fire(db: Database, now: datetime | None = None) -> list[schedules.Fired]:
    async with db.tx() as tx:
        return await schedules.fire_due(tx, now)


async def get(db: Database, name: str) -> Schedule:
    async with db.read() as s:
        return await schedules.get_schedule(s, name)


async def scheduled_tasks(db: Database, schedule_id: str) -> list[Task]:
    async with db.read() as s:
        stmt = sa.select(Task).where(sa.column("schedule_id") == schedule_id).order_by(sa.column("id"))
        return list((await s.execute(stmt)).scalars().all())


# -- due times (pure) --------------------------------------------------------------------


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_next_run_is_read_in_the_schedules_time_zone() -> None:
    # Thursday 2026-12-03 09:00 in Berlin (UTC+1) is past 08:00: next is Friday 08:00 = 07:00Z.
    assert schedules.next_after("0 8 * * 1-5", BERLIN, utc(2026, 12, 3, 8, 0)) == utc(2026, 12, 4, 7, 0)
    # Friday after 08:00: the weekend is skipped, Monday 08:00 Berlin.
    assert schedules.next_after("0 8 * * 1-5", BERLIN, utc(2026, 12, 4, 7, 0)) == utc(2026, 12, 7, 7, 0)
    assert schedules.next_after("@daily", "UTC", utc(2026, 12, 3, 0, 0)) == utc(2026, 12, 4, 0, 0)


def walk(cron: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    out: list[datetime] = []
    t = start
    while (t := schedules.next_after(cron, zone, t)) < end:
        out.append(t)
    return out


def test_spring_forward_runs_a_missing_wall_time_once_after_the_jump() -> None:
    # 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST (01:00Z); 02:30 does not exist.
    runs = walk("30 2 * * *", BERLIN, utc(2026, 3, 27, 12), utc(2026, 3, 30, 12))
    assert runs == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    # 2026-03-29 01:30Z is 03:30 CEST: late by the jump, not skipped.
    assert runs[1].astimezone(schedules.parse_zone(BERLIN)).hour == 3
    # An every-15-minutes schedule keeps a 15-minute rhythm in real time across the jump.
    quarter = walk("*/15 * * * *", BERLIN, utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 50))
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(quarter))
    assert len(quarter) == len(set(quarter)) == 5


def test_fall_back_runs_a_repeated_wall_time_once() -> None:
    # 2026-10-25: Berlin falls back from 03:00 CEST to 02:00 CET (01:00Z); 02:30 happens twice.
    runs = walk("30 2 * * *", BERLIN, utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert runs == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_bad_cron_and_zone_name_the_field() -> None:
    for bad in ("", "not a cron", "61 * * * *", "* * * * * *", "0 0 30 2 *"):
        with pytest.raises(errors.Invalid) as exc:
            schedules.next_after(schedules.validate_cron(bad), "UTC", utcnow())
        assert exc.value.code == "invalid_cron" and exc.value.extra["field"] == "cron"
    for zone in ("Mars/Olympus", "../../etc/passwd", "", "/etc/localtime"):
        with pytest.raises(errors.Invalid) as exc:
            schedules.parse_zone(zone)
        assert exc.value.code == "invalid_timezone" and exc.value.extra["field"] == "timezone"


# -- the store ---------------------------------------------------------------------------


async def test_create_validates_and_plans_the_first_run(db: Database) -> None:
    await seed(db)
    before = utcnow()
    row = await make(db, timezone=BERLIN)
    assert row.next_run_at is not None and row.next_run_at > before
    assert row.next_run_at.astimezone(schedules.parse_zone(BERLIN)).hour == 8
    cases = [
        ({"agent": "ghost"}, "unknown_agent", "agent"),
        ({"queue": "nope"}, "unknown_queue", "queue"),
        ({"cron": "every day"}, "invalid_cron", "cron"),
        ({"timezone": "Berlin"}, "invalid_timezone", "timezone"),
        ({"catchup": "twice"}, "invalid_catchup", "catchup"),
        ({"overlap": "maybe"}, "invalid_overlap", "overlap"),
    ]
    for i, (kw, code, field) in enumerate(cases):
        with pytest.raises(errors.Invalid) as exc:
            await make(db, f"bad-{i}", **kw)
        assert (exc.value.code, exc.value.extra["field"]) == (code, field)
    with pytest.raises(errors.Conflict):
        await make(db)
    with pytest.raises(errors.Invalid):
        await make(db, "Not A Slug")


async def test_a_due_schedule_starts_one_task_linked_to_it(db: Database) -> None:
    await seed(db)
    row = await make(db, parameters={"env": "prod"})
    now = utcnow()
    await set_due(db, "nightly", now - timedelta(seconds=1))
    (fired,) = await fire(db, now)
    assert fired.outcome == "started" and fired.task_id
    assert await fire(db, now) == []  # the same due time never fires twice
    (task,) = await scheduled_tasks(db, row.id)
    assert (task.id, task.source, task.agent, task.queue) == (fired.task_id, "schedule", "echo", "q1")
    assert task.parameters == {"env": "prod"} and task.status == "pending"
    after = await get(db, "nightly")
    assert after.runs == 1 and after.last_task_id == task.id and after.last_outcome == "started"
    assert after.next_run_at is not None and after.next_run_at > now


async def test_two_tickers_on_one_database_start_each_due_run_once(db: Database, db_url: str) -> None:
    """Two processes' worth of engines fire the same due schedules at the same moment: on
    PostgreSQL the rows are claimed with SKIP LOCKED plus the conditional UPDATE, on SQLite the
    second writer waits for the first and then finds nothing due."""
    await seed(db)
    for i in range(20):
        await make(db, f"s{i:02}")
    now = utcnow()
    async with db.tx() as tx:
        await tx.execute(sa.update(Schedule).values(next_run_at=now - timedelta(seconds=1)))
    other = Database(db_url)
    try:

        async def ticker(database: Database) -> list[schedules.Fired]:
            out: list[schedules.Fired] = []
            for _ in range(5):
                async with database.tx() as tx:
                    out += await schedules.fire_due(tx, now, batch=3)
            return out

        a, b = await asyncio.gather(ticker(db), ticker(other))
    finally:
        await other.dispose()
    assert sorted(f.schedule for f in a + b) == [f"s{i:02}" for i in range(20)]
    assert all(f.outcome == "started" for f in a + b)
    async with db.read() as s:
        n = (await s.execute(sa.select(sa.func.count()).select_from(Task))).scalar_one()
    assert n == 20


async def test_missed_runs_catchup_once_starts_one_task(db: Database) -> None:
    await seed(db)
    row = await make(db, cron="*/5 * * * *", catchup="once")
    now = utcnow()
    await set_due(db, "nightly", now - timedelta(hours=3))  # 36 runs missed while down
    (fired,) = await fire(db, now)
    assert fired.outcome == "started"
    assert len(await scheduled_tasks(db, row.id)) == 1
    nxt = (await get(db, "nightly")).next_run_at
    assert nxt is not None and now < nxt <= now + timedelta(minutes=5)


async def test_missed_runs_catchup_skip_starts_none(db: Database) -> None:
    await seed(db)
    row = await make(db, cron="*/5 * * * *", catchup="skip")
    now = utcnow()
    await set_due(db, "nightly", now - timedelta(hours=3))
    (fired,) = await fire(db, now)
    assert fired.outcome == "skipped_missed" and fired.task_id is None
    assert await scheduled_tasks(db, row.id) == []
    after = await get(db, "nightly")
    assert (
        after.next_run_at is not None and after.next_run_at > now and after.last_outcome == "skipped_missed"
    )
    # A run that is on time still starts under `skip`.
    await set_due(db, "nightly", utcnow() - timedelta(seconds=2))
    assert [f.outcome for f in await fire(db)] == ["started"]


async def due_again(db: Database, name: str) -> list[schedules.Fired]:
    await set_due(db, name, utcnow() - timedelta(seconds=1))
    return await fire(db)


@pytest.mark.parametrize("overlap", ["skip", "queue", "cancel"])
async def test_overlap_policy_while_the_previous_run_is_unfinished(db: Database, overlap: str) -> None:
    await seed(db)
    row = await make(db, overlap=overlap)
    (first,) = await due_again(db, "nightly")
    (second,) = await due_again(db, "nightly")
    runs = await scheduled_tasks(db, row.id)
    if overlap == "skip":
        assert second.outcome == "skipped_overlap" and [t.id for t in runs] == [first.task_id]
    elif overlap == "queue":
        assert second.outcome == "started" and [t.status for t in runs] == ["pending", "pending"]
    else:
        assert second.outcome == "cancelled_previous"
        assert {t.id: t.status for t in runs} == {first.task_id: "cancelled", second.task_id: "pending"}
    # Once the last run has ended, the next due time starts a task under every policy.
    async with db.tx() as tx:
        await tasks.cancel(tx, (await get(db, "nightly")).last_task_id or "")
    (third,) = await due_again(db, "nightly")
    assert third.outcome == "started"


async def test_pause_stops_runs_and_resume_does_not_make_them_up(db: Database) -> None:
    await seed(db)
    row = await make(db, cron="* * * * *")
    async with db.tx() as tx:
        paused = await schedules.pause(tx, "nightly")
    assert paused.paused and paused.next_run_at is None
    async with db.read() as s:
        assert await schedules.earliest_due(s) is None
    assert await fire(db, utcnow() + timedelta(hours=1)) == []
    async with db.tx() as tx:
        again = await schedules.pause(tx, row.id)  # idempotent, by id too
    assert again.paused
    async with db.tx() as tx:
        resumed = await schedules.resume(tx, "nightly")
    assert not resumed.paused and resumed.next_run_at is not None
    assert utcnow() < resumed.next_run_at <= utcnow() + timedelta(minutes=1)
    assert await scheduled_tasks(db, row.id) == []


async def test_a_run_that_cannot_start_is_recorded_and_the_schedule_moves_on(db: Database) -> None:
    await seed(db)
    await make(db)
    async with db.tx() as tx:
        await tx.execute(sa.update(Schedule).values(queue="deleted-queue"))
    (fired,) = await due_again(db, "nightly")
    assert fired.outcome == "failed" and fired.error and "deleted-queue" in fired.error
    after = await get(db, "nightly")
    assert after.last_outcome == "failed" and after.next_run_at is not None and after.next_run_at > utcnow()
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Task))).scalar_one() == 0


async def test_list_pages_and_delete_keeps_the_tasks(db: Database) -> None:
    await seed(db)
    for i in range(5):
        await make(db, f"s{i}")
    async with db.read() as s:
        page, cursor = await schedules.list_schedules(s, limit=2)
        names = [r.name for r in page]
        while cursor:
            page, cursor = await schedules.list_schedules(s, limit=2, cursor=cursor)
            names += [r.name for r in page]
    assert names == [f"s{i}" for i in range(5)]
    (fired,) = await due_again(db, "s0")
    async with db.tx() as tx:
        await schedules.delete_schedule(tx, "s0")
    with pytest.raises(errors.NotFound):
        await get(db, "s0")
    async with db.read() as s:
        assert (await tasks.get_task(s, fired.task_id or "")).source == "schedule"


async def test_the_ticker_wakes_on_a_change_not_on_its_poll(db: Database) -> None:
    """With a 30 s poll, a schedule made due (and announced, as every schedule change is)
    fires within a couple of seconds: the ticker waits on the `schedules` notification."""
    await seed(db)
    row = await make(db)
    stop = asyncio.Event()
    ticker = asyncio.create_task(schedules.run_ticker(db, stop, poll=30))
    try:
        for _ in range(500):  # bounded: until it has read the (future) due time and parked
            if db.hub.follower_count(schedules.TOPIC, internal=True):
                break
            await asyncio.sleep(0.01)
        assert db.hub.follower_count(schedules.TOPIC, internal=True) == 1
        async with db.tx() as tx:
            await tx.execute(sa.update(Schedule).values(next_run_at=utcnow() - timedelta(seconds=1)))
            tx.notify(schedules.TOPIC, row.id)
        for _ in range(200):  # bounded: at most ~2 s
            if await scheduled_tasks(db, row.id):
                break
            await asyncio.sleep(0.01)
        assert len(await scheduled_tasks(db, row.id)) == 1
    finally:
        stop.set()
        db.hub.publish(schedules.TOPIC)
        await asyncio.wait_for(ticker, 5)
