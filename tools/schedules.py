"""Tools for schedules: tasks an agent runs on a cron, e.g. "every weekday at 08:00 Berlin".

Registered on the servers an assistant connects to (stdio and `/mcp`), not on the meta
agent's in-process server: the meta agent's plans go through an approval step that knows
tasks, not schedules, so it does not get a tool that starts tasks later without one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from sdk.schedules import ScheduleOut
from tools.backend import Backend
from tools.catalog import READ_ONLY

__all__ = ["ScheduleInfo", "ScheduleList", "register"]

Name = Annotated[str, Field(min_length=1, max_length=64)]
Key = Annotated[str, Field(min_length=1, max_length=100, description="Schedule name (or id).")]

CHANGES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
CREATES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)


class ScheduleInfo(BaseModel):
    name: str
    agent: str
    queue: str | None
    cron: str
    timezone: str
    prompt: str
    paused: bool
    catchup: str
    overlap: str
    next_run_at: datetime | None = Field(description="When the next task starts (UTC); null while paused.")
    last_run_at: datetime | None
    last_task_id: str | None = Field(description="The last run's task: follow it with get_task.")
    last_task_status: str | None
    last_outcome: str | None = Field(
        description="started, skipped_overlap, skipped_missed, cancelled_previous or failed"
    )
    runs: int
    notify: list[str] = Field(default=[], description="Where each run is posted, e.g. slack:#ops.")
    last_notify: str | None = Field(
        default=None,
        description="How the last run was posted: posting, posted, failed: <error> or not delivered: <why>.",
    )

    @classmethod
    def of(cls, s: ScheduleOut) -> ScheduleInfo:
        return cls.model_validate(s.model_dump(include=set(cls.model_fields)))


class ScheduleList(BaseModel):
    schedules: list[ScheduleInfo]
    next_cursor: str | None = None


def register(mcp: MCPServer, backend: Backend) -> None:
    @mcp.tool(title="List schedules", annotations=READ_ONLY)
    async def list_schedules(
        cursor: Annotated[
            str | None, Field(description="next_cursor of the previous page.", max_length=200)
        ] = None,
    ) -> ScheduleList:
        """List the schedules that start tasks on a cron, with their next and last run."""
        async with backend.client("list the schedules") as c:
            page = await c.schedules.list(cursor=cursor)
        return ScheduleList(schedules=[ScheduleInfo.of(s) for s in page.items], next_cursor=page.next_cursor)

    @mcp.tool(title="Create a schedule", annotations=CREATES)
    async def create_schedule(
        name: Annotated[Name, Field(description="A unique slug, e.g. morning-report.")],
        agent: Annotated[Name, Field(description="Agent name (from list_agents).")],
        cron: Annotated[
            str,
            Field(
                description='Five-field cron: minute hour day month weekday, e.g. "0 8 * * 1-5".',
                min_length=1,
                max_length=120,
            ),
        ],
        prompt: Annotated[
            str, Field(description="What each run is asked to do.", min_length=1, max_length=100_000)
        ],
        timezone: Annotated[
            str, Field(description="IANA time zone, e.g. Europe/Berlin.", max_length=64)
        ] = "UTC",
        queue: Annotated[Name | None, Field(description="Queue; omit for the agent's default.")] = None,
        parameters: Annotated[dict[str, Any] | None, Field(description="The agent's parameters.")] = None,
        catchup: Annotated[
            Literal["once", "skip"],
            Field(description="A run missed while the server was down: once or skip."),
        ] = "once",
        overlap: Annotated[
            Literal["skip", "queue", "cancel"],
            Field(description="A run due while the previous is unfinished: skip, queue or cancel it."),
        ] = "skip",
        notify: Annotated[
            list[Annotated[str, Field(max_length=200)]] | None,
            Field(
                description="Post each run to Slack: slack:#channel or slack:CHANNEL_ID (a message per "
                "run, its progress and result in the thread).",
                max_length=10,
            ),
        ] = None,
    ) -> ScheduleInfo:
        """Start a task for `agent` at every time `cron` names in `timezone`. Confirm the
        times with the user first; the result's next_run_at says when the first run starts."""
        body = {
            "name": name,
            "agent": agent,
            "cron": cron,
            "prompt": prompt,
            "timezone": timezone,
            "queue": queue,
            "parameters": parameters or {},
            "catchup": catchup,
            "overlap": overlap,
            "notify": notify or [],
        }
        async with backend.client(f"create schedule {name!r}") as c:
            return ScheduleInfo.of(await c.schedules.create(body))

    @mcp.tool(title="Pause a schedule", annotations=CHANGES)
    async def pause_schedule(name: Key) -> ScheduleInfo:
        """Stop a schedule from starting tasks (a run already started goes on)."""
        async with backend.client(f"pause schedule {name!r}") as c:
            return ScheduleInfo.of(await c.schedules.pause(name))

    @mcp.tool(title="Resume a schedule", annotations=CHANGES)
    async def resume_schedule(name: Key) -> ScheduleInfo:
        """Start a paused schedule again from its next due time (missed times are not made up)."""
        async with backend.client(f"resume schedule {name!r}") as c:
            return ScheduleInfo.of(await c.schedules.resume(name))
