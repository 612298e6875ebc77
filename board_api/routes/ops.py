"""Operations (health, readiness, metrics) and API keys."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from board_api.auditing import Who
from board_api.deps import Admin, DbDep, Principal, Viewer, principal
from board_api.state import app_state
from kernel import __version__, errors
from sdk.schemas import KeyIn, KeyList, KeyOut
from store import keys
from store.audit import record
from store.models import ApiKey

ops = APIRouter()
router = APIRouter()


@ops.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok", "version": __version__}


@ops.get("/readyz")
async def readyz(db: DbDep) -> Response:
    """The process can serve: the database answers."""
    if await db.ping():
        return Response('{"status":"ready"}', media_type="application/json")
    return Response(
        '{"status":"not ready","detail":"database unavailable"}',
        status_code=503,
        media_type="application/json",
    )


@ops.get("/metrics")
async def metrics(request: Request, db: DbDep, _: Viewer) -> Response:
    """Prometheus metrics; once keys exist, scrape with one (any scope) as a bearer token."""
    body = await app_state(request).metrics.render(db)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/whoami")
async def whoami(p: Annotated[Principal, Depends(principal)]) -> dict[str, object]:
    """The caller's key name and scopes (the board hides actions a key may not take)."""
    return {"name": p.name, "scopes": sorted(p.scopes)}


@router.post("/stream-tokens", status_code=201)
async def create_stream_token(db: DbDep, p: Annotated[Principal, Depends(principal)]) -> dict[str, object]:
    """A short-lived token for `?access_token=` on stream GETs (EventSource cannot send
    headers, and a key must not go in a URL). On an open server (no keys) it is null."""
    if p.key_id is None:
        return {"token": None, "expires_at": None, "expires_in": None}
    async with db.read() as s:
        row = await s.get(ApiKey, p.key_id)
    if row is None or row.revoked_at is not None:
        raise errors.Unauthorized(
            "the API key is not valid (unknown, revoked or mistyped)", code="invalid_key"
        )
    token, expires = keys.stream_token(row, time.time())
    return {"token": token, "expires_at": expires, "expires_in": keys.STREAM_TOKEN_SECONDS}


def _key_out(row: ApiKey, key: str | None = None) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=row.scopes,
        queues=row.queues or [],
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        key=key,
    )


@router.post("/keys", response_model=KeyOut, status_code=201)
async def create_key(body: KeyIn, request: Request, db: DbDep, _: Admin, who: Who) -> KeyOut:
    """Create an API key; the key itself is in this answer only."""
    async with db.tx() as tx:
        row, key = await keys.create_key(tx, body.name, list(body.scopes), body.queues)
        made = {"name": row.name, "prefix": row.prefix, "scopes": row.scopes, "queues": row.queues}
        await record(tx, who, "key.create", "key", row.id, made)  # never the key itself
    app_state(request).gate.cache.invalidate()
    return _key_out(row, key)


@router.get("/keys", response_model=KeyList)
async def list_keys(db: DbDep, _: Admin) -> KeyList:
    """API keys (without their secrets)."""
    async with db.read() as s:
        return KeyList(items=[_key_out(r) for r in await keys.list_keys(s)])


@router.delete("/keys/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: str, request: Request, db: DbDep, _: Admin, who: Who) -> KeyOut:
    """Revoke an API key."""
    async with db.tx() as tx:
        row = await keys.revoke_key(tx, key_id)
        await record(tx, who, "key.revoke", "key", row.id, {"name": row.name, "prefix": row.prefix})
    app_state(request).gate.cache.invalidate()
    return _key_out(row)
