"""The calls made per task, served without FastAPI's per-request machinery.

`POST /api/v1/tasks` (a client creating a task), `POST /api/v1/worker-queues/{queue}/exchange`
(a worker reporting and claiming; `/claim`, its long-poll alone, for clients of the SDK's
`claim`) and `POST /api/v1/tasks/{id}/events` or
`/worker-queues/{queue}/events` (a worker streaming what its agents do) are most of a busy control plane's requests, and
`GET /api/v1/tasks/{id}/stream` (a client following its task) comes with each task created
by `exec --follow`. FastAPI spends
more Python on each than the handler does: matching ~120 routes in turn, solving the
dependency graph, parsing the JSON and then validating the dicts, and an exit stack. Here
the body is validated from its bytes by pydantic and the very same endpoint functions are
called with their dependencies in hand.

Only the plain case is taken: a body that does not validate, or anything unusual, goes on to
FastAPI with the bytes already read, so every error keeps its one shape. The routes stay
declared in FastAPI too (OpenAPI, docs, schemathesis). This sits inside `BodyLimit`, which
has already counted the body and authenticated the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from board_api import errors as problems
from board_api.auditing import who
from board_api.deps import AUTHENTICATED, Principal, need, principal
from board_api.routes import streams as stream_routes
from board_api.routes import tasks as task_routes
from board_api.routes import workers as worker_routes
from board_api.state import app_state
from board_api.wire import json_response
from kernel.errors import MetaAgentError
from sdk.exchange import ExchangeBody, ProgressBody
from sdk.schemas import ClaimBody, EventsBody, TaskCreate

__all__ = ["HotRoutes"]

_EXCHANGE = ("/api/v1/worker-queues/", "/exchange")
_CLAIM = ("/api/v1/worker-queues/", "/claim")
_EVENTS = ("/api/v1/tasks/", "/events")
_PROGRESS = ("/api/v1/worker-queues/", "/events")
_STREAM = ("/api/v1/tasks/", "/stream")
Handler = Callable[[BaseModel, Request, Principal, str], Awaitable[Response]]


async def _create(body: BaseModel, request: Request, p: Principal, _: str) -> Response:
    assert isinstance(body, TaskCreate)
    need(p, "viewer")
    state = app_state(request)
    lease_token = request.headers.get("x-lease-token")
    if lease_token is not None and len(lease_token) > 128:
        raise _Unusual
    actor = await who(request, p)
    return await task_routes.create_task(body, state.db, state.settings, p, actor, lease_token)


async def _exchange(body: BaseModel, request: Request, p: Principal, queue: str) -> Response:
    assert isinstance(body, ExchangeBody)
    need(p, "worker")
    state = app_state(request)
    return await worker_routes.exchange(queue, body, request, state.db, state.settings, p)


async def _claim(body: BaseModel, request: Request, p: Principal, queue: str) -> Response:
    assert isinstance(body, ClaimBody)
    need(p, "worker")
    state = app_state(request)
    return await worker_routes.claim(queue, body, request, state.db, state.settings, p)


async def _events(body: BaseModel, request: Request, p: Principal, task_id: str) -> Response:
    assert isinstance(body, EventsBody)
    need(p, "worker")
    state = app_state(request)
    return json_response(await worker_routes.post_events(task_id, body, request, state.db, p))


async def _progress(body: BaseModel, request: Request, p: Principal, queue: str) -> Response:
    assert isinstance(body, ProgressBody)
    need(p, "worker")
    state = app_state(request)
    return await worker_routes.post_progress(queue, body, request, state.db, p)


class _Unusual(Exception):
    """Not for the fast path: FastAPI serves it."""


def _route(scope: Scope) -> tuple[type[BaseModel], Handler, str] | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if path == "/api/v1/tasks":
        return TaskCreate, _create, ""
    head, tail = _EXCHANGE
    if path.startswith(head) and path.endswith(tail):
        queue = path[len(head) : -len(tail)]
        if queue and "/" not in queue:
            return ExchangeBody, _exchange, queue
    head, tail = _CLAIM
    if path.startswith(head) and path.endswith(tail):
        queue = path[len(head) : -len(tail)]
        if queue and "/" not in queue:
            return ClaimBody, _claim, queue
    head, tail = _PROGRESS
    if path.startswith(head) and path.endswith(tail):
        queue = path[len(head) : -len(tail)]
        if queue and "/" not in queue:
            return ProgressBody, _progress, queue
    head, tail = _EVENTS
    if path.startswith(head) and path.endswith(tail):
        task_id = path[len(head) : -len(tail)]
        if task_id and "/" not in task_id:
            return EventsBody, _events, task_id
    return None


def _stream(scope: Scope) -> str | None:
    """The task id of a plain `GET /api/v1/tasks/{id}/stream`: no query, no Last-Event-ID
    (a resume, rarer, goes through FastAPI, which validates them)."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string"):
        return None
    path: str = scope["path"]
    head, tail = _STREAM
    if not (path.startswith(head) and path.endswith(tail)):
        return None
    task_id = path[len(head) : -len(tail)]
    if not task_id or "/" in task_id or any(k == b"last-event-id" for k, _ in scope["headers"]):
        return None
    return task_id


async def _follow(task_id: str, scope: Scope, receive: Receive) -> Response:
    """A client follows its task right after creating it (`exec --follow`) while this loop
    runs the task's claim: FastAPI's routing and dependencies cost the opening ~0.5 ms.
    Authenticated here by the same rule (a GET has no body: BodyLimit left it to the route)."""
    request = Request(scope, receive)
    db = app_state(request).db
    p = need(await principal(request, db), "viewer")
    return await stream_routes.stream_task(task_id, request, db, p)


class HotRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope)
        if route is None and (task_id := _stream(scope)) is not None:
            try:
                response = await _follow(task_id, scope, receive)
            except MetaAgentError as exc:
                response = problems.domain_problem(exc)
            await response(scope, receive, send)
            return
        caller = scope.get(AUTHENTICATED)
        if route is None or caller is None:
            await self.app(scope, receive, send)
            return
        model, handler, arg = route
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left (or BodyLimit refused the body and has answered)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        try:
            body = model.model_validate_json(raw)
            response = await handler(body, Request(scope, receive), caller, arg)
        except (ValidationError, _Unusual):
            await self.app(scope, _replay(raw, receive), send)
            return
        except MetaAgentError as exc:
            response = problems.domain_problem(exc)
        await response(scope, receive, send)


def _replay(raw: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body once more, then whatever the client sends next."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            message: dict[str, Any] = {"type": "http.request", "body": raw, "more_body": False}
            return message
        return await receive()

    return again
