"""tasks.plan: what the meta agent planned (its stated plan, risk notes, approval) for a
task it created; shown by `execution get` and the board's detail panel.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-03 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: an instant catalog change on PostgreSQL, whatever the table's size.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("plan", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("plan")
