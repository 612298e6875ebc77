"""Named secrets: the `secrets` table and `agents.secrets` (the names an agent's tools get).

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-03 18:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = store.models.UTCDateTime(timezone=True)
    op.create_table(
        "secrets",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False, unique=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ciphertext", sa.String(), nullable=True),
        sa.Column("env", sa.String(length=128), nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
    )
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("secrets", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("secrets")
    op.drop_table("secrets")
