"""The audit log's table (created by migration 0011; kept out of store/models.py, which
belongs to the core).

One row per action a person or key took: who (`actor`, `actor_kind`, `source`), when, what
(`action`, e.g. `task.cancel`), on what (`target_kind`, `target_id`) and a compact `details`
object (the request's fields or a before/after; never a secret). Rows are only ever
inserted; the id is a UUIDv7, so "newest first" and cursor paging are a primary-key scan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from store.ids import new_id
from store.models import Table, UTCDateTime, utcnow

__all__ = ["AuditEntry"]


class AuditEntry(Table, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (
        # The filters of GET /audit, each ending in `id` so a filtered page is a range scan.
        sa.Index("ix_audit_actor", "actor", "id"),
        sa.Index("ix_audit_action", "action", "id"),
        sa.Index("ix_audit_target", "target_kind", "target_id", "id"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(max_length=200)
    actor_kind: str = Field(max_length=32)  # key | open | embedded_worker | slack | hook | system
    source: str = Field(max_length=32)  # api | cli | sdk | mcp | board | slack | meta_agent | ...
    action: str = Field(max_length=64)
    target_kind: str | None = Field(default=None, max_length=32)
    target_id: str | None = Field(default=None, max_length=200)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
