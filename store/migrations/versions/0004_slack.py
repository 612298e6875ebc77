"""slack: thread bindings of tasks (relay position, posted messages, lease) and seen event ids

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 04:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = store.models.UTCDateTime(timezone=True)
    op.create_table(
        "slack_threads",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("thread_ts", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_by", sa.String(32), nullable=True),
        sa.Column("participants", sa.JSON(), nullable=False),
        sa.Column("created_at", utc, nullable=False),
    )
    op.create_table(
        "slack_bindings",
        sa.Column("task_id", sa.String(), sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("thread_key", sa.String(255), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("thread_ts", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("posts", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", utc, nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
    )
    op.create_index("ix_slack_bindings_thread_key", "slack_bindings", ["thread_key"])
    op.create_index("ix_slack_bindings_status_lease", "slack_bindings", ["status", "lease_until"])
    op.create_table(
        "slack_events",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("created_at", utc, nullable=False),
    )
    op.create_index("ix_slack_events_created_at", "slack_events", ["created_at"])


def downgrade() -> None:
    op.drop_table("slack_events")
    op.drop_table("slack_bindings")
    op.drop_table("slack_threads")
