"""The schedules table (created by migration 0008; kept out of store/models.py, which belongs
to the core).

A schedule starts a task for an agent at every time its cron expression names, in its own
time zone. `next_run_at` is the claim: a control plane fires a due schedule only by moving
`next_run_at` forward from the value it read (store/schedules.py `fire_due`), so any number of
replicas start exactly one task per due time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from store.ids import new_id
from store.models import Table, UTCDateTime, utcnow

__all__ = ["CATCHUP", "OVERLAP", "Schedule"]

# What to do with a run that fell due while no control plane was up: start it once, or skip
# to the next future time.
CATCHUP = ("once", "skip")
# What to do when a run falls due while the previous run's task is unfinished: skip this run,
# start it anyway (queue), or cancel the previous task and start this one.
OVERLAP = ("skip", "queue", "cancel")


class Schedule(Table, table=True):
    __tablename__ = "schedules"
    __table_args__ = (sa.Index("ix_schedules_due", "paused", "next_run_at"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    agent: str = Field(max_length=64)
    queue: str | None = Field(default=None, max_length=64)
    prompt: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    cron: str = Field(max_length=120)
    timezone: str = Field(default="UTC", max_length=64)
    catchup: str = Field(default="once", max_length=8)
    overlap: str = Field(default="skip", max_length=8)
    paused: bool = False
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_task_id: str | None = Field(default=None, max_length=36)
    # What the last due time did: "started", "skipped_overlap", "cancelled_previous", "failed".
    last_outcome: str | None = Field(default=None, max_length=32)
    last_error: str | None = None
    runs: int = 0  # tasks started so far
    # Where each run's progress goes: ["slack:#ops"] (store/schedules.py `parse_notify`). A run
    # is bound to the channel in the transaction that starts it (store/slack.py `bind_root`).
    notify: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    # Why the last run's notification was not handed over (Slack not configured), else None.
    notify_error: str | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
