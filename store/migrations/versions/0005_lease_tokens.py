"""lease tokens: tasks.lease_token_hash (the claim's fencing token, hashed); api_keys.queues

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00.000000

A task running while this upgrade runs has no token hash, so its worker's next call is
refused (409) and the task goes back to its queue when the lease runs out, as after a
worker crash. Drain workers first to avoid that.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _text(length: int | None = None) -> sa.types.TypeEngine[str]:
    """sqlmodel's AutoString (VARCHAR), as autogenerate wrote it, with its Python type
    declared (sqlmodel leaves it unknown to type checkers)."""
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("lease_token_hash", _text(64), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("queues", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("queues")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("lease_token_hash")
