"""Failure classes and plans: an index for `GET /tasks?failure=CLASS`, and tasks.plan.

`ix_tasks_error_code` (error_code, id), partial on `error_code IS NOT NULL` so it holds the
failed tasks only: a rare class (no row of it among 100,000 failed tasks of 1,000,000) took
100-170 ms through `ix_tasks_status_id` alone, and 0.1 ms with it; a common class stays on
the status index (0.1-0.3 ms). `tasks.plan` keeps what the meta agent stated when it created
the task (its plan, the risk, who approved it), shown by `execution get` and the board.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-03 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_HAS_CODE = sa.text("error_code IS NOT NULL")


def upgrade() -> None:
    # Nullable, no default: an instant catalog change on PostgreSQL, whatever the table's size.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("plan", sa.JSON(), nullable=True))
    op.create_index(
        "ix_tasks_error_code",
        "tasks",
        ["error_code", "id"],
        postgresql_where=_HAS_CODE,
        sqlite_where=_HAS_CODE,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_error_code", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("plan")
