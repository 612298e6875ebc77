"""`notify` on schedules (SQLite and PostgreSQL): the targets' form; the Slack binding made
with the fired task (once, in its transaction); a run whose target cannot be delivered
still starts and says why; the API, CLI and MCP round trips. The relay's side (the root post
and the thread) is in tests/integrations/test_slack_schedules.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from kernel import errors
from store import schedules
from store import slack as slack_store
from store.db import Database
from store.models import Task, utcnow
from store.slack_models import SlackBinding
from tests.board_api.test_api import problem, seed
from tests.cli.test_cli_standin import run
from tests.schedules.helpers import make_due, schedule_body
from tests.schedules.test_cli import CREATE
from tests.schedules.test_mcp import over_http
from tests.schedules.test_store import fire, get, make, scheduled_tasks, set_due
from tests.schedules.test_store import seed as seed_store
from tests.support import LiveServer, wait_for
from tests.tools.helpers import error, ok


@pytest.mark.parametrize(
    "targets,kept",
    [
        (["slack:#ops"], ["slack:#ops"]),
        ([" slack:C0123ABCD "], ["slack:C0123ABCD"]),
        (["slack:#ops", "slack:#ops"], ["slack:#ops"]),  # the same target once
        ([], []),
    ],
)
def test_notify_targets_that_are_kept(targets: list[str], kept: list[str]) -> None:
    assert schedules.parse_notify(targets) == kept


@pytest.mark.parametrize(
    "targets,says",
    [
        (["email:ops@example.com"], "'email:ops@example.com' is not slack:#channel-name or slack:CHANNEL_ID"),
        (["slack:ops"], "'slack:ops' is not"),  # a name needs its #
        (["slack:#Ops Team"], "'slack:#Ops Team' is not"),
        (["#ops"], "'#ops' is not"),
        (["slack:#ops", "slack:#dev"], "a schedule posts its runs to one Slack channel"),
    ],
)
def test_notify_targets_that_are_refused(targets: list[str], says: str) -> None:
    with pytest.raises(errors.Invalid) as exc:
        schedules.parse_notify(targets)
    assert (exc.value.code, exc.value.extra["field"]) == ("invalid_notify", "notify")
    assert says in exc.value.detail


async def bindings(db: Database) -> list[SlackBinding]:
    async with db.read() as s:
        return list((await s.execute(sa.select(SlackBinding))).scalars().all())


async def test_a_fired_run_is_bound_to_its_channel_once(db: Database) -> None:
    await seed_store(db)
    row = await make(db, notify=["slack:#ops"])
    now = utcnow()
    await set_due(db, "nightly", now - timedelta(seconds=1))
    async with db.tx() as tx:
        (fired,) = await schedules.fire_due(tx, now, deliver={"slack"})
    async with db.tx() as tx:
        assert await schedules.fire_due(tx, now, deliver={"slack"}) == []  # that due time is done
    (task,) = await scheduled_tasks(db, row.id)
    (b,) = await bindings(db)
    assert (b.task_id, b.status, b.thread_ts, b.channel) == (task.id, "active", "", "")
    assert b.posts == {"notify": {"to": "#ops", "schedule": "nightly"}}
    assert fired.notify_error is None
    async with db.read() as s:
        assert await schedules.notify_states(s, [await get(db, "nightly")]) == {row.id: "posting"}


async def test_a_channel_id_is_bound_as_the_channel(db: Database) -> None:
    await seed_store(db)
    await make(db, notify=["slack:C0123ABCD"])
    await set_due(db, "nightly", utcnow() - timedelta(seconds=1))
    async with db.tx() as tx:
        await schedules.fire_due(tx, deliver={"slack"})
    (b,) = await bindings(db)
    assert b.channel == "C0123ABCD" and b.posts["notify"]["to"] == "C0123ABCD"


async def test_the_task_and_its_binding_commit_together(db: Database) -> None:
    """A crash after the run was fired but before the commit leaves neither: the due time
    is still due, and the next ticker starts and binds it."""
    await seed_store(db)
    await make(db, notify=["slack:#ops"])
    await set_due(db, "nightly", utcnow() - timedelta(seconds=1))
    with pytest.raises(RuntimeError):
        async with db.tx() as tx:
            (fired,) = await schedules.fire_due(tx, deliver={"slack"})
            assert await slack_store.get_binding(tx.session, fired.task_id or "") is not None
            raise RuntimeError("the process dies before the commit")
    async with db.read() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Task))).scalar() == 0
    assert await bindings(db) == []
    async with db.tx() as tx:
        (fired,) = await schedules.fire_due(tx, deliver={"slack"})
    assert [b.task_id for b in await bindings(db)] == [fired.task_id]


async def test_without_slack_the_run_starts_and_says_it_was_not_posted(db: Database) -> None:
    await seed_store(db)
    row = await make(db, notify=["slack:#ops"])
    await set_due(db, "nightly", utcnow() - timedelta(seconds=1))
    (fired,) = await fire(db)  # deliver=(): Slack is not configured here
    assert fired.outcome == "started" and fired.task_id
    assert fired.notify_error and "Slack is not configured" in fired.notify_error
    assert await bindings(db) == []
    after = await get(db, "nightly")
    assert after.notify == ["slack:#ops"] and after.notify_error == fired.notify_error
    async with db.read() as s:
        state = (await schedules.notify_states(s, [after]))[row.id]
    assert state.startswith("not delivered: Slack is not configured") and "slack:#ops" in state


def test_api_round_trip_and_a_bad_target(server: LiveServer, db_url: str) -> None:
    """Over HTTP on a control plane without Slack: the target is kept and shown, the run
    starts, and the schedule says it was not delivered."""
    with server.client() as c:
        seed(c)
        problem(c.post("/schedules", json=schedule_body(notify=["teams:#ops"])), 422, "invalid_notify")
        made = c.post("/schedules", json=schedule_body(notify=["slack:#ops"]))
        assert made.status_code == 201, made.text
        assert made.json()["notify"] == ["slack:#ops"]
        make_due(db_url, "morning")
        got = wait_for(lambda: (g := c.get("/schedules/morning").json())["runs"] and g, 10, "the run")
        assert got["last_task_status"] == "pending"
        assert got["last_notify"].startswith("not delivered: Slack is not configured")
        [listed] = c.get("/schedules").json()["items"]
        assert listed["notify"] == ["slack:#ops"] and listed["last_notify"] == got["last_notify"]


def test_cli_notify_round_trip_and_a_bad_target(server: LiveServer, db_url: str) -> None:
    with server.client() as c:
        seed(c)
    made = run(None, *CREATE, "--notify", "slack:#ops", "--json", url=server.url)
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["notify"] == ["slack:#ops"]
    shown = run(None, "schedules", "get", "ops-report", url=server.url)
    assert "notify" in shown.stdout and "slack:#ops" in shown.stdout
    make_due(db_url, "ops-report")
    wait_for(
        lambda: json.loads(run(None, "schedules", "get", "ops-report", "--json", url=server.url).stdout)[
            "runs"
        ],
        10,
        "the run",
    )
    shown = run(None, "schedules", "get", "ops-report", url=server.url)
    assert "not delivered: Slack is not configured" in shown.stdout
    table = run(None, "schedules", "list", url=server.url)
    assert "NOTIFY" in table.stdout and "slack:#ops" in table.stdout

    bad = run(None, *CREATE[:2], "other", *CREATE[3:], "--notify", "slack:ops", url=server.url)
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "invalid_notify" in bad.output and "slack:#channel-name or slack:CHANNEL_ID" in bad.output


async def test_mcp_create_schedule_takes_notify(server: LiveServer) -> None:
    with server.client() as api:
        seed(api)
    async with over_http(server.url) as c:
        made = await ok(
            c,
            "create_schedule",
            name="mcp-notify",
            agent="echo",
            cron="0 8 * * *",
            prompt="p",
            notify=["slack:#ops"],
        )
        assert made["notify"] == ["slack:#ops"] and made["last_notify"] is None
        bad = await error(
            c, "create_schedule", name="x", agent="echo", cron="0 8 * * *", prompt="p", notify=["slack:ops"]
        )
        assert "invalid_notify" in bad and "slack:#channel-name" in bad
