"""API keys: shown once, stored as a SHA-256 hash, compared in constant time.

A key reads `ma_<prefix>_<secret>`; the prefix finds the row, the hash proves the secret.
(A fast hash is right here: the secret is 32 random bytes, not a guessable password.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from store import errors
from store.db import Tx
from store.models import ApiKey, utcnow

__all__ = ["SCOPES", "create_key", "has_active_keys", "list_keys", "revoke_key", "verify_key"]

SCOPES = ("admin", "operator", "viewer", "worker")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(tx: Tx, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Returns the stored row and the full key (the only time it is visible)."""
    bad = [s for s in scopes if s not in SCOPES]
    if not scopes or bad:
        raise errors.Invalid(f"scopes must be some of {', '.join(SCOPES)}", code="invalid_scope")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(name=name[:100], prefix=prefix, hash=_hash(secret), scopes=sorted(set(scopes)))
    tx.session.add(row)
    await tx.session.flush()
    return row, f"ma_{prefix}_{secret}"


async def verify_key(session: Any, key: str) -> ApiKey | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "ma":
        return None
    row = (await session.execute(select(ApiKey).where(ApiKey.prefix == parts[1]))).scalars().first()
    if row is None or row.revoked_at is not None:
        # Still hash, so an unknown prefix costs the same time as a wrong secret.
        hmac.compare_digest(_hash(parts[2]), "0" * 64)
        return None
    if not hmac.compare_digest(_hash(parts[2]), row.hash):
        return None
    return row  # type: ignore[no-any-return]


async def has_active_keys(session: Any) -> bool:
    n = await session.scalar(
        select(sa.func.count()).select_from(ApiKey).where(col(ApiKey.revoked_at).is_(None))
    )
    return bool(n)


async def list_keys(session: Any) -> list[ApiKey]:
    return list((await session.execute(select(ApiKey).order_by(col(ApiKey.created_at)))).scalars().all())


async def revoke_key(tx: Tx, key_id: str) -> ApiKey:
    row = await tx.session.get(ApiKey, key_id)
    if row is None:
        raise errors.NotFound(f"API key {key_id} not found", code="key_not_found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row  # type: ignore[no-any-return]
