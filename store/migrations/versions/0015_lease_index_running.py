"""`ix_tasks_lease` holds running tasks only: (lease_expires_at) where status = 'running'.

It was (status, lease_expires_at) over every task, for the reaper's one question (running
tasks whose lease ran out, store/reaper.py). Each version of a task's row added an entry
(pending, running, finished: a task's status moves are not HOT updates), and a claim
planned without statistics (a new database, before autovacuum's first analyze) read every
pending task through it and sorted them by id: 3-7 ms a claim with thousands pending
(auto_explain under bench.peers).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    op.drop_index("ix_tasks_lease", table_name="tasks")
    op.create_index(
        "ix_tasks_lease", "tasks", ["lease_expires_at"], postgresql_where=RUNNING, sqlite_where=RUNNING
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_lease", table_name="tasks")
    op.create_index("ix_tasks_lease", "tasks", ["status", "lease_expires_at"])
