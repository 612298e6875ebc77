"""Webhooks in: hooks (admin-made endpoints), their signatures, templates and deliveries.

A delivery to `POST /hooks/{name}` goes, in this order (board_api/routes/hooks.py):

1. `verify`: the signature over the raw body, in constant time, before anything parses it.
   - `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`;
   - `generic`: `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
     (Stripe's layout); a `t` more than `TOLERANCE` seconds away from now is refused, so a
     captured request cannot be replayed later.
2. the delivery id (`X-GitHub-Delivery`, else `X-Request-Id`; for the generic scheme
   without one, the signature): a delivery already taken in answers with its task
   (`find_delivery`), and the unique row makes that hold under races and across replicas.
3. `render`: the prompt and parameter templates, in Jinja's immutable sandbox, strictly
   (an undefined name is a 422 naming it) and with a bounded output.
4. `deliver`: the task (`source = "webhook"`, `requested_by = "hook:<name>"`) and the
   delivery row, in one transaction.

When the hook has a callback URL, the delivery row also carries the callback's progress;
the control plane posts the task's outcome once the task has ended (board_api/hook_callbacks.py
sends; `due_callbacks`, `claim_callback`, `finish_callback` are its bookkeeping).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import jinja2
import sqlalchemy as sa
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from kernel import errors
from store import catalog
from store.db import Tx
from store.hook_models import Hook, HookDelivery
from store.models import TERMINAL, Task, utcnow
from store.tasks import NewTask, create_task

__all__ = [
    "SCHEMES",
    "TOLERANCE",
    "Callback",
    "Duplicate",
    "HookSpec",
    "Verified",
    "check_template",
    "claim_callback",
    "create_hook",
    "delete_hook",
    "deliver",
    "due_callbacks",
    "find_delivery",
    "finish_callback",
    "get_hook",
    "list_deliveries",
    "list_hooks",
    "pending_callback_tasks",
    "render",
    "rotate_secret",
    "sign_generic",
    "verify",
]

SCHEMES = ("github", "generic")
TOLERANCE = 300  # seconds a generic-scheme timestamp may be away from the server's clock
MAX_TEMPLATE_CHARS = 20_000
# A `sending` claim older than this belongs to a replica that died mid-send: taken over.
CLAIM_STALE = timedelta(minutes=5)
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_GENERIC = re.compile(r"^\s*t=(?P<t>\d{1,12})\s*,(?P<sigs>.*)$")

# Immutable: a template cannot change the payload it reads (list.append, dict.update are
# refused), nor reach Python internals (the sandbox). StrictUndefined: a missing key is an
# error that names it, not a silently empty prompt.
_env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass
class HookSpec:
    name: str
    agent: str
    prompt_template: str
    queue: str | None = None
    param_templates: dict[str, str] | None = None
    scheme: str = "github"
    callback_url: str | None = None


@dataclass(frozen=True)
class Verified:
    """A signed delivery: its id, and (generic scheme) the signature that also identifies it."""

    delivery_id: str
    signature: str | None


@dataclass(frozen=True)
class Callback:
    """A claimed callback: where to post, with what secret, about which task."""

    delivery: HookDelivery
    hook: Hook
    task: Task


class Duplicate(Exception):
    """The delivery was taken in before (a retry, a replay, or a concurrent twin)."""


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    return _env.from_string(source)


def check_template(what: str, source: str) -> None:
    """Refuse a template that does not parse (422 `invalid_template`, with the line)."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise errors.Invalid(f"{what} is over {MAX_TEMPLATE_CHARS} characters", code="invalid_template")
    try:
        _compiled(source)
    except jinja2.TemplateSyntaxError as exc:
        raise errors.Invalid(f"{what}: line {exc.lineno}: {exc.message}", code="invalid_template") from None


def _check_callback_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise errors.Invalid("callback_url must be an http:// or https:// URL", code="invalid_callback_url")


async def create_hook(tx: Tx, spec: HookSpec) -> tuple[Hook, str]:
    """A new hook and its secret (the only time the secret is returned besides rotation)."""
    catalog.check_slug("hook", spec.name)
    if spec.scheme not in SCHEMES:
        raise errors.Invalid(f"scheme must be one of {', '.join(SCHEMES)}", code="invalid_scheme")
    check_template("prompt_template", spec.prompt_template)
    for key, source in (spec.param_templates or {}).items():
        check_template(f"parameter {key!r}", source)
    if spec.callback_url:
        _check_callback_url(spec.callback_url)
    agent, _ = await catalog.agent_routing(tx.session, spec.agent)
    queue = (await catalog.get_queue(tx.session, spec.queue)).name if spec.queue else None
    secret = _new_secret()
    hook = Hook(
        name=spec.name,
        agent=agent,
        queue=queue,
        prompt_template=spec.prompt_template,
        param_templates=dict(spec.param_templates or {}),
        scheme=spec.scheme,
        secret=secret,
        callback_url=spec.callback_url or None,
    )
    tx.session.add(hook)
    try:
        async with tx.session.begin_nested():
            await tx.session.flush()
    except IntegrityError as exc:
        raise errors.Conflict(f"a hook named {spec.name!r} exists", code="name_taken") from exc
    return hook, secret


async def list_hooks(session: AsyncSession) -> list[Hook]:
    return list((await session.execute(select(Hook).order_by(col(Hook.name)))).scalars().all())


async def get_hook(session: AsyncSession, key: str) -> Hook:
    """A hook by name (or id); 404 `hook_not_found` otherwise."""
    stmt = select(Hook).where(sa.or_(col(Hook.name) == key, col(Hook.id) == key))
    hook = (await session.execute(stmt)).scalars().first()
    if hook is None:
        raise errors.NotFound(f"no hook named {key[:100]!r}", code="hook_not_found")
    return hook


async def delete_hook(tx: Tx, key: str) -> Hook:
    """Delete a hook; its deliveries go with it (the tasks stay)."""
    hook = await get_hook(tx.session, key)
    await tx.execute(sa.delete(HookDelivery).where(col(HookDelivery.hook_id) == hook.id))
    await tx.session.delete(hook)
    await tx.session.flush()
    return hook


async def rotate_secret(tx: Tx, key: str) -> tuple[Hook, str]:
    """A new secret for the hook; the old one stops verifying at once."""
    hook = await get_hook(tx.session, key)
    secret = _new_secret()
    hook.secret, hook.updated_at = secret, utcnow()
    await tx.session.flush()
    return hook, secret


# --- signatures ---------------------------------------------------------------------------


def _hmac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def sign_generic(secret: str, body: bytes, timestamp: int) -> str:
    """The generic scheme's `X-Signature` value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={_hmac(secret, str(timestamp).encode() + b'.' + body)}"


def _bad_signature(detail: str) -> errors.Unauthorized:
    return errors.Unauthorized(detail, code="invalid_signature")


def verify(hook: Hook, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
    """Check the delivery's signature (constant time) and name the delivery; 401 otherwise.

    `headers` are looked up in lower case (Starlette's `Headers` does that itself)."""
    signature = None
    if hook.scheme == "github":
        given = headers.get("x-hub-signature-256", "")
        expected = "sha256=" + _hmac(hook.secret, body)
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise _bad_signature("X-Hub-Signature-256 is missing or does not match the body")
        raw_id = headers.get("x-github-delivery") or headers.get("x-request-id")
        delivery_id = raw_id or "sha256:" + hashlib.sha256(body).hexdigest()[:56]
    else:
        signature = _verify_generic(hook.secret, headers.get("x-signature", ""), body, now)
        raw_id = headers.get("x-request-id")
        delivery_id = raw_id or "sig:" + signature[:60]
    if raw_id is not None and not _DELIVERY_ID.fullmatch(raw_id):
        raise errors.Invalid(
            "the delivery id header must be 1-128 letters, digits or ._:-", code="invalid_delivery_id"
        )
    return Verified(delivery_id, signature)


def _verify_generic(secret: str, header: str, body: bytes, now: float) -> str:
    m = _GENERIC.match(header)
    if m is None:
        raise _bad_signature("X-Signature must read t=<unix seconds>,v1=<hex HMAC-SHA256>")
    timestamp = int(m.group("t"))
    expected = _hmac(secret, m.group("t").encode() + b"." + body)
    # Every v1 is compared (a sender rotating its secret may send two); no early exit.
    matched = False
    for part in m.group("sigs").split(","):
        name, _, value = part.strip().partition("=")
        if name == "v1" and hmac.compare_digest(value.strip().encode(), expected.encode()):
            matched = True
    if not matched:
        raise _bad_signature("X-Signature does not match the body")
    # Checked after the signature: an attacker learns nothing about the clock from a forgery.
    if abs(now - timestamp) > TOLERANCE:
        raise errors.Unauthorized(
            f"the signature's timestamp is more than {TOLERANCE} s away from the server's clock "
            "(a replay, or a clock out of sync)",
            code="stale_timestamp",
        )
    return expected


# --- templates ----------------------------------------------------------------------------


def _render_one(what: str, source: str, context: dict[str, Any], limit: int) -> str:
    out: list[str] = []
    size = 0
    try:
        # Streamed, so a template that would produce gigabytes stops at the limit.
        for piece in _compiled(source).generate(context):
            size += len(piece)
            if size > limit:
                raise errors.Invalid(
                    f"{what} renders to more than {limit} characters", code="template_output_too_large"
                )
            out.append(piece)
    except jinja2.UndefinedError as exc:
        raise errors.Invalid(
            f"{what}: {exc.message} in the payload (the template needs it)", code="template_undefined"
        ) from None
    except SecurityError as exc:
        raise errors.Invalid(f"{what}: refused by the sandbox: {exc}", code="template_unsafe") from None
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise errors.Invalid(f"{what}: {type(exc).__name__}: {exc}", code="template_failed") from None
    return "".join(out)


def render(hook: Hook, payload: Any, event: str | None, limit: int) -> tuple[str, dict[str, str]]:
    """The task's prompt and parameters for `payload`.

    Templates see the payload's top-level keys (when it is an object), `payload` (all of it),
    `hook` (the hook's name) and `event` (GitHub's `X-GitHub-Event`, else None)."""
    context: dict[str, Any] = (
        {str(k): v for k, v in cast(dict[Any, Any], payload).items()} if isinstance(payload, dict) else {}
    )
    context.update(payload=payload, hook=hook.name, event=event)
    prompt = _render_one("prompt_template", hook.prompt_template, context, limit)
    params: dict[str, str] = {}
    budget = limit
    for key, source in sorted(hook.param_templates.items()):
        params[key] = _render_one(f"parameter {key!r}", str(source), context, budget)
        budget -= len(params[key])
    return prompt, params


# --- deliveries ---------------------------------------------------------------------------


async def find_delivery(session: AsyncSession, hook: Hook, verified: Verified) -> HookDelivery | None:
    """The delivery taken in before under this id (or, generic scheme, this signature)."""
    same = col(HookDelivery.delivery_id) == verified.delivery_id
    if verified.signature is not None:
        same = sa.or_(same, col(HookDelivery.signature) == verified.signature)
    stmt = select(HookDelivery).where(col(HookDelivery.hook_id) == hook.id, same).limit(1)
    return (await session.execute(stmt)).scalars().first()


async def deliver(
    tx: Tx,
    hook: Hook,
    verified: Verified,
    prompt: str,
    params: dict[str, str],
    *,
    max_prompt_chars: int,
) -> tuple[Task, HookDelivery]:
    """The task for a new delivery, and its row. Raises `Duplicate` (rolling back the task
    with the transaction) when the delivery was taken in meanwhile."""
    task = await create_task(
        tx,
        NewTask(
            prompt=prompt,
            agent=hook.agent,
            queue=hook.queue,
            parameters=dict(params),
            source="webhook",
            requested_by=f"hook:{hook.name}",
        ),
        max_prompt_chars=max_prompt_chars,
    )
    row = HookDelivery(
        hook_id=hook.id,
        delivery_id=verified.delivery_id,
        signature=verified.signature,
        task_id=task.id,
        callback_status="pending" if hook.callback_url else "none",
    )
    tx.session.add(row)
    try:
        async with tx.session.begin_nested():
            await tx.session.flush()
    except IntegrityError:
        raise Duplicate(verified.delivery_id) from None
    if hook.callback_url:
        tx.notify("hooks", task.id)  # callback senders on every replica start watching it
    return task, row


async def list_deliveries(session: AsyncSession, hook: Hook, limit: int = 50) -> list[HookDelivery]:
    """The hook's latest deliveries, newest first."""
    stmt = (
        select(HookDelivery)
        .where(col(HookDelivery.hook_id) == hook.id)
        .order_by(col(HookDelivery.id).desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())


# --- callbacks ----------------------------------------------------------------------------


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        col(HookDelivery.callback_status) == "pending",
        sa.and_(
            col(HookDelivery.callback_status) == "sending",
            col(HookDelivery.callback_claimed_at) < now - CLAIM_STALE,
        ),
    )


async def pending_callback_tasks(session: AsyncSession) -> list[str]:
    """Task ids whose callback has not been sent yet (what a sender watches at start)."""
    stmt = select(HookDelivery.task_id).where(col(HookDelivery.callback_status).in_(("pending", "sending")))
    return list((await session.execute(stmt)).scalars().all())


async def due_callbacks(session: AsyncSession, task_ids: Sequence[str] | None = None) -> list[str]:
    """Delivery ids whose task has ended and whose callback nobody is sending (of `task_ids`
    only, when given)."""
    stmt = (
        select(HookDelivery.id)
        .join(Task, col(Task.id) == col(HookDelivery.task_id))
        .where(_claimable(utcnow()), col(Task.status).in_([s.value for s in TERMINAL]))
        .limit(100)
    )
    if task_ids is not None:
        stmt = stmt.where(col(HookDelivery.task_id).in_(list(task_ids)))
    return list((await session.execute(stmt)).scalars().all())


async def claim_callback(tx: Tx, delivery_id: str) -> Callback | None:
    """Take the callback of one delivery for this replica; None if another one has it."""
    now = utcnow()
    # RETURNING, not rowcount: what both backends answer alike for "did this row change".
    claimed = (
        await tx.execute(
            sa.update(HookDelivery)
            .where(col(HookDelivery.id) == delivery_id, _claimable(now))
            .values(callback_status="sending", callback_claimed_at=now)
            .returning(col(HookDelivery.id))
        )
    ).first()
    if claimed is None:
        return None
    row = await tx.session.get(HookDelivery, delivery_id, populate_existing=True)
    if row is None:
        return None
    hook = await tx.session.get(Hook, row.hook_id)
    task = await tx.session.get(Task, row.task_id)
    if hook is None or task is None or not hook.callback_url:
        row.callback_status, row.callback_error = "failed", "the hook or its callback URL is gone"
        await tx.session.flush()
        return None
    return Callback(row, hook, task)


async def finish_callback(tx: Tx, delivery_id: str, status: str, attempts: int, error: str | None) -> None:
    """Record how a callback ended: `sent`, `refused` (by the SSRF guard) or `failed`."""
    await tx.execute(
        sa.update(HookDelivery)
        .where(col(HookDelivery.id) == delivery_id)
        .values(
            callback_status=status,
            callback_attempts=attempts,
            callback_error=None if error is None else error[:1000],
        )
    )
