"""Typed dependencies shared by the routes: the database, settings, the caller."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from kernel import errors
from kernel.settings import Settings
from store import keys
from store.db import Database


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]
    key_id: str | None = None
    # A worker key bound to queues acts on tasks of those queues only (empty: any).
    queues: frozenset[str] = frozenset()

    def can(self, scope: str) -> bool:
        # admin ⊃ operator ⊃ viewer; worker is separate (plus read access to what it runs).
        if "admin" in self.scopes:
            return True
        if scope == "viewer":
            return bool(self.scopes & {"operator", "viewer", "worker"})
        return scope in self.scopes


OPEN = Principal("anonymous", frozenset({"admin"}))
# `serve`'s own worker, with the credential it minted at start (never stored in the database).
EMBEDDED_WORKER = Principal("embedded-worker", frozenset({"worker"}))
# Where board_api/bodylimit.py leaves the caller it authenticated before reading the body.
AUTHENTICATED = "meta_agent.principal"


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per request on the hottest routes (seen as
# ~10% of the control plane's CPU in a throughput profile).
async def get_db(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


class KeyCache:
    """Whether any key exists, cached briefly: the open-mode check runs on every request."""

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl, self._at, self._value = ttl, 0.0, False

    async def any(self, db: Database) -> bool:
        now = time.monotonic()
        if now - self._at > self.ttl:
            async with db.read() as s:
                self._value = await keys.has_active_keys(s)
            self._at = now
        return self._value

    def invalidate(self) -> None:
        self._at = 0.0


async def principal(request: Request, db: DbDep) -> Principal:
    known: Principal | None = request.scope.get(AUTHENTICATED)
    if known is not None:
        return known
    cache: KeyCache = request.app.state.key_cache
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not token and request.method == "GET" and request.url.path.endswith("/stream"):
        # A browser's EventSource cannot send headers, so the board passes a short-lived
        # stream token (POST /stream-tokens) as `?access_token=`. Only on GETs of SSE
        # routes: they are read-only, and a URL may reach access logs and history.
        query = request.query_params.get("access_token", "").strip()
        if query:
            return await _stream_principal(db, query)
    if not token:
        if not await cache.any(db) and request.app.state.open_mode:
            return OPEN
        raise errors.Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    embedded: str | None = request.app.state.worker_token
    if embedded and hmac.compare_digest(token.encode(), embedded.encode()):
        return EMBEDDED_WORKER
    async with db.read() as s:
        row = await keys.verify_key(s, token)
    if row is None:
        raise errors.Unauthorized(
            "the API key is not valid (unknown, revoked or mistyped)", code="invalid_key"
        )
    return Principal(row.name or row.prefix, frozenset(row.scopes), row.id, frozenset(row.queues or ()))


async def _stream_principal(db: Any, token: str) -> Principal:
    if not token.startswith("mst_"):
        raise errors.Unauthorized(
            "a key does not go in a URL: send it as `Authorization: Bearer <key>`, or put a "
            "stream token from POST /api/v1/stream-tokens in `access_token`",
            code="invalid_stream_token",
        )
    async with db.read() as s:
        row = await keys.verify_stream_token(s, token, time.time())
    if row is None:
        raise errors.Unauthorized(
            "the stream token is expired, revoked or malformed; get a new one from POST /api/v1/stream-tokens",
            code="invalid_stream_token",
        )
    return Principal(row.name or row.prefix, frozenset(row.scopes), row.id)


def require(scope: str):  # type: ignore[no-untyped-def]
    async def check(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if not p.can(scope):
            raise errors.Forbidden(f"this key lacks the {scope!r} scope", code="insufficient_scope")
        return p

    return Depends(check)


Viewer = Annotated[Principal, require("viewer")]
Operator = Annotated[Principal, require("operator")]
Admin = Annotated[Principal, require("admin")]
WorkerKey = Annotated[Principal, require("worker")]
