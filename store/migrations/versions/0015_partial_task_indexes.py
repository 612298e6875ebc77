"""Three of the tasks' indexes hold only the rows their questions ask about.

- `ix_tasks_lease`: (lease_expires_at) where status = 'running', for the reaper's one
  question (running tasks whose lease ran out, store/reaper.py). It was (status,
  lease_expires_at) over every task. And a claim planned on a new database, without
  statistics, read every pending task through it and sorted them by id: 3-7 ms a claim
  with thousands pending (auto_explain under bench.peers).
- `ix_tasks_team` and `ix_tasks_parent_id`: where the column is not null (a team's tasks,
  a task's children). Most tasks have neither.

Every version of a task's row added an entry to each (a status move is not a HOT update):
three of a task's seven index entries per version, most of them for nothing.

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

PARTIAL = {
    "ix_tasks_lease": (["lease_expires_at"], "status = 'running'"),
    "ix_tasks_team": (["team"], "team IS NOT NULL"),
    "ix_tasks_parent_id": (["parent_id"], "parent_id IS NOT NULL"),
}
WHOLE = {
    "ix_tasks_lease": ["status", "lease_expires_at"],
    "ix_tasks_team": ["team"],
    "ix_tasks_parent_id": ["parent_id"],
}


def upgrade() -> None:
    for name, (columns, where) in PARTIAL.items():
        op.drop_index(name, table_name="tasks")
        cond = sa.text(where)
        op.create_index(name, "tasks", columns, postgresql_where=cond, sqlite_where=cond)


def downgrade() -> None:
    for name, columns in WHOLE.items():
        op.drop_index(name, table_name="tasks")
        op.create_index(name, "tasks", columns)
