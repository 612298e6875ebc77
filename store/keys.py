"""API keys: shown once, stored as a SHA-256 hash, compared in constant time.

A key reads `ma_<prefix>_<secret>`; the prefix finds the row, the hash proves the secret.
(A fast hash is right here: the secret is 32 random bytes, not a guessable password.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from kernel import errors
from store.db import Tx
from store.models import ApiKey, utcnow

__all__ = [
    "SCOPES",
    "STREAM_TOKEN_SECONDS",
    "create_key",
    "has_active_keys",
    "list_keys",
    "revoke_key",
    "stream_token",
    "verify_key",
    "verify_stream_token",
]

SCOPES = ("admin", "operator", "viewer", "worker")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(tx: Tx, name: str, scopes: list[str], queues: Sequence[str] = ()) -> tuple[ApiKey, str]:
    """Returns the stored row and the full key (the only time it is visible). `queues`
    binds a worker key: it then claims and acts on tasks of those queues only."""
    bad = [s for s in scopes if s not in SCOPES]
    if not scopes or bad:
        raise errors.Invalid(f"scopes must be some of {', '.join(SCOPES)}", code="invalid_scope")
    if "admin" not in scopes and not await has_active_keys(tx.session):
        # The first key closes an open server: were it not admin, nobody could manage keys.
        raise errors.Conflict(
            "the first API key must have the admin scope (it ends open mode, and only an admin "
            "key can create the others): create it with `--scope admin`",
            code="first_key_must_be_admin",
        )
    if queues and set(scopes) != {"worker"}:
        raise errors.Invalid("`queues` binds worker keys only (scopes: worker)", code="invalid_scope")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        name=name[:100],
        prefix=prefix,
        hash=_hash(secret),
        scopes=sorted(set(scopes)),
        queues=sorted(set(queues)),
    )
    tx.session.add(row)
    await tx.session.flush()
    return row, f"ma_{prefix}_{secret}"


async def verify_key(session: AsyncSession, key: str) -> ApiKey | None:
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
    return row


# A browser's EventSource cannot send headers, so a stream's credential rides in its URL,
# where proxies and histories may keep it. The board therefore never puts its key there, but
# a stream token: good for stream GETs only, for minutes, signed with the key's stored hash
# (so it needs no table, holds on every replica, and dies with the key when it is revoked).
STREAM_TOKEN_SECONDS = 600


def _stream_sig(row: ApiKey, expires: int) -> str:
    return hmac.new(row.hash.encode(), f"stream.{row.prefix}.{expires}".encode(), hashlib.sha256).hexdigest()


def stream_token(row: ApiKey, now: float) -> tuple[str, int]:
    """`mst_<prefix>_<expires>_<signature>` and its expiry (epoch seconds)."""
    expires = int(now) + STREAM_TOKEN_SECONDS
    return f"mst_{row.prefix}_{expires}_{_stream_sig(row, expires)}", expires


async def verify_stream_token(session: AsyncSession, token: str, now: float) -> ApiKey | None:
    """The key a live, well-signed stream token was made for; None otherwise."""
    parts = token.split("_")
    if len(parts) != 4 or parts[0] != "mst" or not parts[2].isdigit():
        return None
    expires = int(parts[2])
    if expires < now or expires > now + STREAM_TOKEN_SECONDS + 60:
        return None
    row = (await session.execute(select(ApiKey).where(ApiKey.prefix == parts[1]))).scalars().first()
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(_stream_sig(row, expires), parts[3]) else None


async def has_active_keys(session: AsyncSession) -> bool:
    n = await session.scalar(
        select(sa.func.count()).select_from(ApiKey).where(col(ApiKey.revoked_at).is_(None))
    )
    return bool(n)


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.execute(select(ApiKey).order_by(col(ApiKey.created_at)))).scalars().all())


async def revoke_key(tx: Tx, key_id: str) -> ApiKey:
    row = await tx.session.get(ApiKey, key_id)
    if row is None:
        raise errors.NotFound(f"API key {key_id} not found", code="key_not_found")
    if row.revoked_at is None:
        if "admin" in row.scopes:
            await _keep_an_admin(tx, row)
        row.revoked_at = utcnow()
    return row


async def _keep_an_admin(tx: Tx, leaving: ApiKey) -> None:
    # Revoking every key would reopen the server to anyone on loopback (open mode is "no
    # active key"), and leave nobody able to manage keys. Locked (PostgreSQL) so that two
    # admins revoking each other at once cannot both pass.
    active = (
        await tx.session.execute(select(ApiKey).where(col(ApiKey.revoked_at).is_(None)).with_for_update())
    ).scalars()
    if not any("admin" in k.scopes and k.id != leaving.id for k in active):
        raise errors.Conflict(
            "this is the last admin key: create another admin key before revoking it "
            "(with no admin key nobody could manage keys, and with no key the server would be open)",
            code="last_admin_key",
        )
