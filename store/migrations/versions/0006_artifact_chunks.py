"""artifact_chunks: artifacts' bytes in pieces, written as an upload arrives

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00.000000

An artifact's bytes move from `artifacts.content` (one value, read and written whole) to
`artifact_chunks`; an existing artifact becomes its own single chunk.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_chunks",
        sa.Column("artifact_id", sa.String(), primary_key=True),
        sa.Column("idx", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.execute(
        "INSERT INTO artifact_chunks (artifact_id, idx, data) "
        "SELECT id, 0, content FROM artifacts WHERE length(content) > 0"
    )
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("content")


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(sa.Column("content", sa.LargeBinary(), nullable=False, server_default=sa.text("''")))
    conn = op.get_bind()
    chunks = sa.table(
        "artifact_chunks", sa.column("artifact_id"), sa.column("idx"), sa.column("data", sa.LargeBinary)
    )
    artifacts = sa.table("artifacts", sa.column("id"), sa.column("content", sa.LargeBinary))
    for (art_id,) in conn.execute(sa.select(chunks.c.artifact_id).distinct()).all():
        rows = conn.execute(
            sa.select(chunks.c.data).where(chunks.c.artifact_id == art_id).order_by(chunks.c.idx)
        )
        content = b"".join(r[0] for r in rows)
        conn.execute(sa.update(artifacts).where(artifacts.c.id == art_id).values(content=content))
    op.drop_table("artifact_chunks")
