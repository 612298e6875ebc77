"""hooks: webhooks in (endpoints with templates and secrets) and their deliveries

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-03 18:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = store.models.UTCDateTime(timezone=True)
    op.create_table(
        "hooks",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("prompt_template", sa.Text(), nullable=False),
        sa.Column("param_templates", sa.JSON(), nullable=False),
        sa.Column("scheme", sa.String(16), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("callback_url", sa.String(2048), nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
    )
    op.create_table(
        "hook_deliveries",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("hook_id", sa.String(), sa.ForeignKey("hooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("delivery_id", sa.String(128), nullable=False),
        sa.Column("signature", sa.String(64), nullable=True),
        sa.Column("task_id", sa.String(), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("callback_status", sa.String(16), nullable=False),
        sa.Column("callback_attempts", sa.Integer(), nullable=False),
        sa.Column("callback_error", sa.String(1000), nullable=True),
        sa.Column("callback_claimed_at", utc, nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.UniqueConstraint("hook_id", "delivery_id"),
        sa.UniqueConstraint("hook_id", "signature"),
    )
    op.create_index("ix_hook_deliveries_task_id", "hook_deliveries", ["task_id"])
    op.create_index("ix_hook_deliveries_callback", "hook_deliveries", ["callback_status"])


def downgrade() -> None:
    op.drop_table("hook_deliveries")
    op.drop_table("hooks")
