"""Agent prerequisites: `agents.requires`, `tasks.needs` / `tasks.waiting_for`,
`workers.capabilities` (store/prereqs.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("requires", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("needs", sa.String(), nullable=True))
        batch.add_column(sa.Column("waiting_for", sa.String(), nullable=True))
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("capabilities", sa.JSON(), nullable=True))
    # Only tasks whose agent requires something are in it: the common task pays nothing.
    op.create_index(
        "ix_tasks_needs",
        "tasks",
        ["queue", "status", "needs"],
        postgresql_where=sa.text("needs IS NOT NULL"),
        sqlite_where=sa.text("needs IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_needs", table_name="tasks")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("capabilities")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("waiting_for")
        batch.drop_column("needs")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("requires")
