"""schedules.notify: where each run's progress is posted (e.g. ["slack:#ops"]), and
schedules.notify_error: why the last run's notification could not be handed over.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("notify", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("notify_error", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("notify_error")
        batch.drop_column("notify")
