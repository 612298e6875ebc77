"""Wire models of schedules (`/api/v1/schedules`): what a client sends and gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from sdk.schemas import Name, Prompt, Strict

__all__ = ["Catchup", "Overlap", "ScheduleCreate", "ScheduleList", "ScheduleOut"]

Catchup = Literal["once", "skip"]
Overlap = Literal["skip", "queue", "cancel"]


class ScheduleCreate(Strict):
    name: Name = Field(description="Unique slug, e.g. morning-report")
    agent: Name = Field(description="The agent every run starts (name or id)")
    queue: Name | None = Field(default=None, description="Worker queue; default: the agent's")
    prompt: Prompt = Field(description="What each run's task is asked to do")
    parameters: dict[str, Any] = {}
    cron: Annotated[str, StringConstraints(min_length=1, max_length=120)] = Field(
        description='Five-field cron (minute hour day month weekday), e.g. "0 8 * * 1-5", or @daily'
    )
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        default="UTC", description="IANA time zone the cron is read in, e.g. Europe/Berlin"
    )
    catchup: Catchup = Field(
        default="once", description="A run missed while the control plane was down: start it once, or skip it"
    )
    overlap: Overlap = Field(
        default="skip",
        description="A run due while the previous is unfinished: skip it, queue it anyway, or cancel the previous",
    )
    paused: bool = False
    notify: Annotated[list[Annotated[str, StringConstraints(max_length=200)]], Field(max_length=10)] = Field(
        default=[],
        description="Where each run's progress is posted: slack:#channel or slack:CHANNEL_ID "
        "(a root message per run, progress and result in its thread)",
    )


class ScheduleOut(BaseModel):
    id: str
    name: str
    agent: str
    queue: str | None
    prompt: str
    parameters: dict[str, Any]
    cron: str
    timezone: str
    catchup: str
    overlap: str
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_task_id: str | None
    last_task_status: str | None = None
    last_outcome: str | None
    last_error: str | None
    runs: int
    notify: list[str] = []
    # How the last run was posted to `notify`: posting, posted, "failed: <Slack error>" or
    # "not delivered: <why>" (e.g. Slack is not configured); None without notify or a run.
    last_notify: str | None = None
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class ScheduleList(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None = None
