"""schedules: tasks started by cron expressions; tasks.schedule_id links a run to its schedule

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = store.models.UTCDateTime(timezone=True)
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("prompt", sa.String(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("catchup", sa.String(8), nullable=False),
        sa.Column("overlap", sa.String(8), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", utc, nullable=True),
        sa.Column("last_run_at", utc, nullable=True),
        sa.Column("last_task_id", sa.String(36), nullable=True),
        sa.Column("last_outcome", sa.String(32), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
    )
    op.create_index("ix_schedules_due", "schedules", ["paused", "next_run_at"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("schedule_id", sa.String(36), nullable=True))
    # Partial: only scheduled tasks are indexed, so other inserts do not maintain it.
    scheduled = sa.text("schedule_id IS NOT NULL")
    op.create_index(
        "ix_tasks_schedule_id", "tasks", ["schedule_id"], postgresql_where=scheduled, sqlite_where=scheduled
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_schedule_id", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("schedule_id")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
