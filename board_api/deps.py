"""Typed dependencies shared by the routes: the database, settings, the caller.

Who the caller is follows `store.auth` (the rule `/mcp` shares); `Principal` and the
special callers are re-exported here for the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from board_api.state import app_state
from kernel import errors
from kernel.settings import Settings
from store.auth import OPEN, Principal, bearer_token, stream_principal
from store.db import Database

__all__ = [
    "AUTHENTICATED",
    "OPEN",
    "Admin",
    "DbDep",
    "Operator",
    "Principal",
    "SettingsDep",
    "Viewer",
    "WorkerKey",
    "get_db",
    "get_settings",
    "need",
    "principal",
    "require",
]


# Where board_api/bodylimit.py leaves the caller it authenticated before reading the body.
AUTHENTICATED = "meta_agent.principal"


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per request on the hottest routes (seen as
# ~10% of the control plane's CPU in a throughput profile).
async def get_db(request: Request) -> Database:
    return app_state(request).db


async def get_settings(request: Request) -> Settings:
    return app_state(request).settings


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def principal(request: Request, db: DbDep) -> Principal:
    """The caller, by the rule of `store.auth` (the same one `/mcp` applies)."""
    known: Principal | None = request.scope.get(AUTHENTICATED)
    if known is not None:
        return known
    gate = app_state(request).gate
    token = bearer_token(request.headers.get("authorization", "")) or ""
    if not token and request.method == "GET" and request.url.path.endswith("/stream"):
        # A browser's EventSource cannot send headers, so the board passes a short-lived
        # stream token (POST /stream-tokens) as `?access_token=`. Only on GETs of SSE
        # routes: they are read-only, and a URL may reach access logs and history.
        query = request.query_params.get("access_token", "").strip()
        if query:
            return await stream_principal(db, query)
    if not token:
        if await gate.is_open(db):
            return OPEN
        raise errors.Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    return await gate.bearer(db, token)


def need(p: Principal, scope: str) -> Principal:
    """`p`, if it has `scope`; else 403 `insufficient_scope`."""
    if not p.can(scope):
        raise errors.Forbidden(f"this key lacks the {scope!r} scope", code="insufficient_scope")
    return p


def require(scope: str) -> DependsParam:
    async def check(p: Annotated[Principal, Depends(principal)]) -> Principal:
        return need(p, scope)

    return Depends(check)


Viewer = Annotated[Principal, require("viewer")]
Operator = Annotated[Principal, require("operator")]
Admin = Annotated[Principal, require("admin")]
WorkerKey = Annotated[Principal, require("worker")]
