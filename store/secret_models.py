"""The secrets table (created by migration 0012; kept out of store/models.py, which belongs
to the core).

A secret is either `stored` (its value encrypted with the server's `META_AGENT_SECRET_KEY`,
a Fernet key: AES-128-CBC + HMAC-SHA256) or `env` (a reference to a variable of the worker's
own environment: the control plane never sees that value). Only names and kinds are ever
read back out through the API; the ciphertext leaves the database only towards a worker that
holds the lease of a task whose agent lists the secret (store/secrets.py `for_task`).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field

from store.ids import new_id
from store.models import Table, UTCDateTime, utcnow

__all__ = ["KINDS", "Secret"]

KINDS = ("stored", "env")


class Secret(Table, table=True):
    __tablename__ = "secrets"
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True, max_length=128)
    kind: str = Field(max_length=16)  # "stored" | "env"
    ciphertext: str | None = None  # Fernet token of the value (kind "stored")
    env: str | None = Field(default=None, max_length=128)  # the worker's variable (kind "env")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
