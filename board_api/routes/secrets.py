"""Named secrets: admins list names and set or delete them; a worker gets a leased task's values.

`GET /secrets` returns names and kinds, never a value; `PUT /secrets/{name}` takes one in;
`POST /tasks/{id}/secrets` is the only route that gives one out, to the worker holding the
task's lease (a stale token gets 409, a key bound to other queues 403, as on every worker
call). `SecretStore` is the plugin that adds the routes and, at start, registers every stored
value with kernel.redact so that this process masks them at ingest.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Response

from board_api.deps import Admin, DbDep, SettingsDep, WorkerKey
from kernel.settings import Settings
from sdk.schemas import TokenBody
from sdk.secrets import SecretList, SecretOut, SecretSet, TaskSecretsOut
from store import secrets
from store.db import Database
from store.leases import Lease

__all__ = ["SecretStore", "router"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["secrets"])
SecretName = Annotated[str, Path(max_length=128)]


def _out(info: secrets.SecretInfo) -> SecretOut:
    return SecretOut.model_validate(info, from_attributes=True)


@router.get("/secrets", response_model=SecretList)
async def list_secrets(db: DbDep, _: Admin) -> SecretList:
    """Secrets by name with their kind; never their values."""
    async with db.read() as s:
        return SecretList(items=[_out(i) for i in await secrets.list_secrets(s)])


@router.put("/secrets/{name}", response_model=SecretOut)
async def set_secret(
    name: SecretName, body: SecretSet, db: DbDep, settings: SettingsDep, _: Admin, response: Response
) -> SecretOut:
    """Create or replace a secret: a value (stored encrypted) or a worker variable (`env`)."""
    async with db.tx() as tx:
        info, created = await secrets.set_secret(
            tx, name, value=body.value, env=body.env, key=settings.secret_key
        )
    response.status_code = 201 if created else 200
    return _out(info)


@router.delete("/secrets/{name}", status_code=204)
async def delete_secret(name: SecretName, db: DbDep, _: Admin) -> Response:
    """Delete a secret (refused while an agent lists it)."""
    async with db.tx() as tx:
        await secrets.delete_secret(tx, name)
    return Response(status_code=204)


@router.post("/tasks/{task_id}/secrets", response_model=TaskSecretsOut)
async def task_secrets(
    task_id: Annotated[str, Path(max_length=64)],
    body: TokenBody,
    db: DbDep,
    settings: SettingsDep,
    p: WorkerKey,
) -> TaskSecretsOut:
    """The secrets of the leased task's agent, for the worker that holds the lease."""
    async with db.tx() as tx:
        got = await secrets.for_task(tx, task_id, Lease(body.token, p.queues), settings.secret_key)
    return TaskSecretsOut(values=got.values, env=got.env, missing=got.missing)


class SecretStore:
    """The secrets routes, and the masking of stored values from the start (a plugin)."""

    def __init__(self, settings: Settings) -> None:
        self.key = settings.secret_key
        secrets.cipher(self.key)  # a malformed key stops the start, naming the setting

    def install(self, app: FastAPI) -> None:
        app.include_router(router, prefix="/api/v1")

    @contextlib.asynccontextmanager
    async def running(self, db: Database) -> AsyncGenerator[None]:
        async with db.read() as s:
            n, unreadable = await secrets.register_stored(s, self.key)
        if n:
            log.info("masking %d stored secret(s) at ingest", n)
        if unreadable:  # said at start, not first by a failed task
            log.warning(
                "%s cannot decrypt stored secret(s) %s: tasks needing them fail with missing_secret",
                "no META_AGENT_SECRET_KEY" if self.key is None else "META_AGENT_SECRET_KEY",
                ", ".join(unreadable),
            )
        yield
