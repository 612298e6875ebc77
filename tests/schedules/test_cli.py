"""`meta-agent schedules ...` against a live control plane (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from tests.board_api.test_api import seed
from tests.cli.test_cli_standin import run
from tests.schedules.helpers import make_due
from tests.support import LiveServer, wait_for

CREATE = [
    "schedules",
    "create",
    "ops-report",
    "--agent",
    "echo",
    "--queue",
    "q1",
    "--cron",
    "0 8 * * 1-5",
    "--tz",
    "Europe/Berlin",
    "--prompt",
    "Report on last night",
    "--param",
    "env=prod",
    "--overlap",
    "queue",
]


def cli(server: LiveServer, *args: str) -> dict:  # type: ignore[type-arg]
    result = run(None, *args, "--json", url=server.url)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_schedules_commands_json_and_tables(server: LiveServer, db_url: str) -> None:
    with server.client() as c:
        seed(c)
    made = cli(server, *CREATE)
    assert (made["name"], made["timezone"], made["overlap"], made["parameters"]) == (
        "ops-report",
        "Europe/Berlin",
        "queue",
        {"env": "prod"},
    )
    assert [s["name"] for s in cli(server, "schedules", "list")["items"]] == ["ops-report"]
    assert cli(server, "schedules", "get", "ops-report")["id"] == made["id"]

    make_due(db_url, "ops-report")
    with server.client() as c:
        wait_for(lambda: c.get("/schedules/ops-report").json()["runs"] == 1, 10, "the run")
    got = cli(server, "schedules", "get", "ops-report")
    assert got["last_task_id"] and got["last_task_status"] == "pending"
    shown = run(None, "schedules", "get", "ops-report", url=server.url)
    assert got["last_task_id"] in shown.stdout and "0 8 * * 1-5 (Europe/Berlin)" in shown.stdout
    table = run(None, "schedules", "list", url=server.url)
    assert "ops-report" in table.stdout and "Europe/Berlin" in table.stdout and "pending" in table.stdout
    narrow = run(None, "schedules", "list", url=server.url, columns=80)
    assert "ops-report" in narrow.stdout and all(len(line) <= 80 for line in narrow.stdout.splitlines())

    assert cli(server, "schedules", "pause", "ops-report")["paused"] is True
    assert "paused" in run(None, "schedules", "list", url=server.url).stdout
    resumed = cli(server, "schedules", "resume", "ops-report")
    assert resumed["paused"] is False and resumed["next_run_at"]
    assert cli(server, "schedules", "delete", "ops-report") == {"deleted": "ops-report"}
    assert cli(server, "schedules", "list")["items"] == []


def test_bad_input_is_one_line_naming_the_problem(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
    cases = [
        (["--cron", "every day"], "invalid_cron", "cron"),
        (["--tz", "Mars/Base"], "invalid_timezone", "Mars/Base"),
        (["--agent", "ghost"], "unknown_agent", "ghost"),
        (["--catchup", "twice"], "validation_error", "catchup"),
    ]
    for extra, code, word in cases:
        result = run(None, *CREATE, *extra, url=server.url)
        assert result.exit_code == 1
        assert code in result.output and word in result.output and "Traceback" not in result.output
    bad = run(None, *CREATE, "--param", "novalue", url=server.url)
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
    missing = run(None, "schedules", "pause", "nope", url=server.url)
    assert missing.exit_code == 1 and "schedule_not_found" in missing.output
