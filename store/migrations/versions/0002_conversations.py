"""conversations: the meta agent's chats, kept across restarts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _text(length: int | None = None) -> sa.types.TypeEngine[str]:
    """sqlmodel's AutoString (VARCHAR), as autogenerate wrote it, with its Python type
    declared (sqlmodel leaves it unknown to type checkers)."""
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", _text(), nullable=False),
        sa.Column("source", _text(32), nullable=False),
        sa.Column("requested_by", _text(), nullable=True),
        sa.Column("external_id", _text(255), nullable=True),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("task_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_conversations_external_id"), "conversations", ["external_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_conversations_external_id"), table_name="conversations")
    op.drop_table("conversations")
