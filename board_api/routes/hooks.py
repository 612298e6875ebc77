"""Webhooks in: the admin's `/api/v1/hooks` and the senders' `POST /hooks/{name}`.

`POST /hooks/{name}` is called by other servers (GitHub, Alertmanager, ...): it takes no API
key, the HMAC signature over the body is the credential (store/hooks.py says the schemes).
The body limit (board_api/bodylimit.py) bounds what is read; the host guard passes it like
`/slack/events` (no browser `Origin`: a page's cross-site post is refused as everywhere).
The signature is checked on the raw bytes before the JSON is parsed.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from board_api.auditing import Who, task_details
from board_api.deps import Admin, DbDep, SettingsDep
from kernel import errors
from sdk.hooks import DeliveryList, DeliveryOut, HookAccepted, HookIn, HookList, HookOut
from store import hooks
from store.audit import Actor, record
from store.hook_models import Hook, HookDelivery
from store.tasks import get_task

__all__ = ["inbound", "router"]

router = APIRouter()
inbound = APIRouter()


def _out(hook: Hook, secret: str | None = None) -> HookOut:
    return HookOut(
        id=hook.id,
        name=hook.name,
        agent=hook.agent,
        queue=hook.queue,
        prompt_template=hook.prompt_template,
        params={str(k): str(v) for k, v in hook.param_templates.items()},
        scheme=hook.scheme,
        callback_url=hook.callback_url,
        url_path=f"/hooks/{hook.name}",
        created_at=hook.created_at,
        updated_at=hook.updated_at,
        secret=secret,
    )


def _delivery(row: HookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        delivery_id=row.delivery_id,
        task_id=row.task_id,
        callback_status=row.callback_status,
        callback_attempts=row.callback_attempts,
        callback_error=row.callback_error,
        created_at=row.created_at,
    )


@router.post("/hooks", response_model=HookOut, status_code=201)
async def create_hook(body: HookIn, db: DbDep, _: Admin, who: Who) -> HookOut:
    """Create a webhook; its secret is in this answer only."""
    spec = hooks.HookSpec(
        name=body.name,
        agent=body.agent,
        queue=body.queue,
        prompt_template=body.prompt_template,
        param_templates=dict(body.params),
        scheme=body.scheme,
        callback_url=body.callback_url,
    )
    async with db.tx() as tx:
        hook, secret = await hooks.create_hook(tx, spec)
        shown = {"agent": spec.agent, "queue": spec.queue, "scheme": spec.scheme}
        await record(tx, who, "hook.create", "hook", hook.name, shown)  # never the secret
    return _out(hook, secret)


@router.get("/hooks", response_model=HookList)
async def list_hooks(db: DbDep, _: Admin) -> HookList:
    """Webhooks (without their secrets)."""
    async with db.read() as s:
        return HookList(items=[_out(h) for h in await hooks.list_hooks(s)])


@router.get("/hooks/{key}", response_model=HookOut)
async def get_hook(key: str, db: DbDep, _: Admin) -> HookOut:
    """One webhook, by name or id (without its secret)."""
    async with db.read() as s:
        return _out(await hooks.get_hook(s, key))


@router.delete("/hooks/{key}", status_code=204)
async def delete_hook(key: str, db: DbDep, _: Admin, who: Who) -> Response:
    """Delete a webhook; the tasks it made stay."""
    async with db.tx() as tx:
        await hooks.delete_hook(tx, key)
        await record(tx, who, "hook.delete", "hook", key)
    return Response(status_code=204)


@router.post("/hooks/{key}/rotate-secret", response_model=HookOut)
async def rotate_secret(key: str, db: DbDep, _: Admin, who: Who) -> HookOut:
    """A new secret for the webhook (in this answer only); the old one stops working."""
    async with db.tx() as tx:
        hook, secret = await hooks.rotate_secret(tx, key)
        await record(tx, who, "hook.rotate_secret", "hook", hook.name)
    return _out(hook, secret)


@router.get("/hooks/{key}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    key: str, db: DbDep, _: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> DeliveryList:
    """The webhook's latest deliveries, with their tasks and callback outcomes."""
    async with db.read() as s:
        hook = await hooks.get_hook(s, key)
        return DeliveryList(items=[_delivery(r) for r in await hooks.list_deliveries(s, hook, limit)])


def _accepted(status_code: int, body: HookAccepted) -> JSONResponse:
    return JSONResponse(body.model_dump(), status_code=status_code)


@inbound.post(
    "/hooks/{name}",
    response_model=HookAccepted,
    status_code=202,
    responses={200: {"model": HookAccepted, "description": "a delivery taken in before"}},
    tags=["webhooks"],
)
async def receive(name: str, request: Request, db: DbDep, settings: SettingsDep) -> JSONResponse:
    """A signed delivery becomes a task (202); the same delivery again answers its task (200)."""
    async with db.read() as s:
        hook = await hooks.get_hook(s, name)
    body = await request.body()
    verified = hooks.verify(hook, request.headers, body, time.time())
    async with db.read() as s:
        seen = await hooks.find_delivery(s, hook, verified)
    if seen is not None:
        return await _duplicate(db, seen)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.Invalid(f"the body is not JSON: {exc}", code="invalid_json") from None
    prompt, params = hooks.render(
        hook, payload, request.headers.get("x-github-event"), settings.max_prompt_chars
    )
    try:
        async with db.tx() as tx:
            task, row = await hooks.deliver(
                tx, hook, verified, prompt, params, max_prompt_chars=settings.max_prompt_chars
            )
            # The sender proved the hook's secret: it acts as the hook.
            sender = Actor(f"hook:{hook.name}", "hook", "hook")
            await record(tx, sender, "task.create", "task", task.id, task_details(task))
    except hooks.Duplicate:  # a twin of this delivery committed first (a retry racing it)
        async with db.read() as s:
            seen = await hooks.find_delivery(s, hook, verified)
        if seen is None:  # not reached: the unique row that refused ours exists
            raise errors.Conflict(
                "the delivery is being taken in; retry", code="delivery_in_progress"
            ) from None
        return await _duplicate(db, seen)
    return _accepted(
        202, HookAccepted(task_id=task.id, delivery_id=row.delivery_id, duplicate=False, status=task.status)
    )


async def _duplicate(db: DbDep, seen: HookDelivery) -> JSONResponse:
    async with db.read() as s:
        task = await get_task(s, seen.task_id)
    return _accepted(
        200, HookAccepted(task_id=task.id, delivery_id=seen.delivery_id, duplicate=True, status=task.status)
    )
