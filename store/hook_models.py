"""The tables of webhooks in (created by migration 0009; kept out of store/models.py, which
belongs to the core).

- `hooks`: an admin-made endpoint `POST /hooks/{name}`: the agent (and queue) its tasks go
  to, the prompt and parameter templates, the signature scheme, the shared secret, and an
  optional callback URL that gets the task's result when it ends.
- `hook_deliveries`: one row per delivery taken in, unique on the sender's delivery id (and,
  for the generic scheme, on the signature), so a retried or replayed delivery finds the
  task the first one made instead of making a second. It also carries the callback's state.

The secret is stored as given: an HMAC needs the secret itself to verify a signature (the
sender holds the same one), so it cannot be hashed like an API key. It is never shown after
`create` and `rotate-secret`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from store.ids import new_id
from store.models import Table, UTCDateTime, utcnow

__all__ = ["CALLBACK_STATES", "Hook", "HookDelivery"]

# none: the hook has no callback URL; pending: waiting for the task to end; sending: one
# replica holds it (since `callback_claimed_at`); sent | refused (the SSRF guard) | failed.
CALLBACK_STATES = ("none", "pending", "sending", "sent", "refused", "failed")


class Hook(Table, table=True):
    __tablename__ = "hooks"
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    agent: str = Field(max_length=64)
    queue: str | None = Field(default=None, max_length=64)
    prompt_template: str = Field(sa_type=sa.Text)
    param_templates: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    scheme: str = Field(default="github", max_length=16)  # github | generic
    secret: str = Field(max_length=128)
    callback_url: str | None = Field(default=None, max_length=2048)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class HookDelivery(Table, table=True):
    __tablename__ = "hook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("hook_id", "delivery_id"),
        sa.UniqueConstraint("hook_id", "signature"),
        sa.Index("ix_hook_deliveries_callback", "callback_status"),
    )
    id: str = Field(default_factory=new_id, primary_key=True)
    hook_id: str = Field(foreign_key="hooks.id", ondelete="CASCADE")
    delivery_id: str = Field(max_length=128)
    # The generic scheme's signature: a replay with another X-Request-Id is still the same.
    signature: str | None = Field(default=None, max_length=64)
    task_id: str = Field(foreign_key="tasks.id", index=True, ondelete="CASCADE")
    callback_status: str = Field(default="none", max_length=16)
    callback_attempts: int = 0
    callback_error: str | None = Field(default=None, max_length=1000)
    callback_claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
