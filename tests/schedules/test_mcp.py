"""The schedule tools through the official MCP client: over Streamable HTTP at /mcp (on SQLite
and PostgreSQL) and in-process; bad input is an error result that names the problem."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.board_api.test_api import seed
from tests.schedules.helpers import make_due
from tests.support import LiveServer, wait_for
from tests.tools.helpers import error, ok
from tools.backend import Backend
from tools.server import build_server

SCHEDULE_TOOLS = {"list_schedules", "create_schedule", "pause_schedule", "resume_schedule"}


@asynccontextmanager
async def over_http(url: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(timeout=60) as http:
        async with Client(streamable_http_client(f"{url}/mcp", http_client=http)) as c:  # type: ignore[arg-type]
            yield c


async def test_schedule_tools_over_http(server: LiveServer, db_url: str) -> None:
    with server.client() as api:
        seed(api)
    async with over_http(server.url) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert SCHEDULE_TOOLS <= names
        made = await ok(
            c,
            "create_schedule",
            name="weekday-report",
            agent="echo",
            cron="0 8 * * 1-5",
            timezone="Europe/Berlin",
            prompt="Report",
            parameters={"env": "prod"},
        )
        assert made["next_run_at"] and made["paused"] is False and made["overlap"] == "skip"
        listed = await ok(c, "list_schedules")
        assert [s["name"] for s in listed["schedules"]] == ["weekday-report"]

        make_due(db_url, "weekday-report")
        with server.client() as api:
            wait_for(lambda: api.get("/schedules/weekday-report").json()["runs"] == 1, 10, "the run")
        (s,) = (await ok(c, "list_schedules"))["schedules"]
        task = await ok(c, "get_task", task_id=s["last_task_id"])
        assert task["status"] == "pending" and s["last_outcome"] == "started"

        paused = await ok(c, "pause_schedule", name="weekday-report")
        assert paused["paused"] is True and paused["next_run_at"] is None
        resumed = await ok(c, "resume_schedule", name="weekday-report")
        assert resumed["paused"] is False and resumed["next_run_at"]

        bad_cron = await error(c, "create_schedule", name="x", agent="echo", cron="whenever", prompt="p")
        assert "invalid_cron" in bad_cron and "whenever" in bad_cron
        bad_zone = await error(
            c,
            "create_schedule",
            name="x",
            agent="echo",
            cron="0 8 * * *",
            prompt="p",
            timezone="Nowhere/City",
        )
        assert "invalid_timezone" in bad_zone
        assert "schedule_not_found" in await error(c, "pause_schedule", name="nope")
    with server.client() as api:
        assert [x["name"] for x in api.get("/schedules").json()["items"]] == ["weekday-report"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_in_process_server_has_them_only_when_asked(server: LiveServer) -> None:
    """The meta agent's in-process server (the default) has no schedule tools: its approval
    step covers tasks, not schedules that start tasks later."""
    async with Client(build_server(Backend(server.url))) as c:  # type: ignore[arg-type]
        assert not SCHEDULE_TOOLS & {t.name for t in (await c.list_tools()).tools}
    async with Client(build_server(Backend(server.url), with_schedules=True)) as c:  # type: ignore[arg-type]
        assert SCHEDULE_TOOLS <= {t.name for t in (await c.list_tools()).tools}
        assert (await ok(c, "list_schedules"))["schedules"] == []
