"""The Slack integration's tables (created by migration 0004; kept out of store/models.py,
which belongs to the core).

- `slack_threads`: one Slack thread = one meta-agent conversation, with who may answer in it.
- `slack_bindings`: a task whose progress is relayed to a thread, and how far (`last_seq`).
  `posts` records every message the relay posted (or was about to post) for the task, so a
  restart neither repeats nor loses one. `lease_owner`/`lease_until`: which replica relays it.
- `slack_events`: Slack event ids already taken in, so a retried delivery is not run twice
  (on any replica, after a restart too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from store.models import Table, UTCDateTime, utcnow

__all__ = ["SlackBinding", "SlackEventSeen", "SlackThread"]


class SlackThread(Table, table=True):
    __tablename__ = "slack_threads"
    key: str = Field(primary_key=True, max_length=255)  # "slack:TEAM:CHANNEL:THREAD_TS"
    team_id: str = Field(default="", max_length=32)
    channel: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)
    kind: str = Field(default="channel", max_length=16)  # channel | im | assistant
    started_by: str | None = Field(default=None, max_length=32)
    participants: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SlackBinding(Table, table=True):
    __tablename__ = "slack_bindings"
    __table_args__ = (sa.Index("ix_slack_bindings_status_lease", "status", "lease_until"),)
    task_id: str = Field(primary_key=True, foreign_key="tasks.id", ondelete="CASCADE")
    thread_key: str = Field(index=True, max_length=255)
    team_id: str = Field(default="", max_length=32)
    channel: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)
    conversation_id: str | None = None
    last_seq: int = 0
    posts: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    status: str = Field(default="active", max_length=16)  # active | done | failed
    error: str | None = None
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SlackEventSeen(Table, table=True):
    __tablename__ = "slack_events"
    event_id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
