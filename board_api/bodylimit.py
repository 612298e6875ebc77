"""Request bodies: the caller's key is checked before a byte is read, and the bytes actually
read are counted against the route's limit.

A limit taken from `Content-Length` alone is no limit: a chunked body has none, and FastAPI
reads (and buffers) a JSON body before it runs any dependency, so without this an
unauthenticated caller could make the server hold a body of any size. Here:

- a declared length over the limit is refused (413) before anything is read;
- a request with a body to the REST API needs a valid key (or an open server) first: the
  same `deps.principal` the routes use decides, and its answer is kept for them;
- the bytes are counted as the app reads them, and the moment they pass the limit the client
  gets 413 with `Connection: close` (so it stops sending) while the app sees a disconnect.

`/mcp` checks its bearer key itself (the MCP SDK's middleware, before it reads the body) and
`/slack/events` is authenticated by Slack's signature over the body, so it gets a small limit.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from board_api import errors as problems
from board_api.deps import AUTHENTICATED, principal
from board_api.state import app_state
from kernel.errors import MetaAgentError

__all__ = ["SLACK_MAX_BODY", "BodyLimit"]

log = logging.getLogger(__name__)

# Slack's event, interaction and command payloads are a few KB (a message is at most 40,000
# characters); anything near this is not from Slack, and its signature is checked only after
# the body has been read.
SLACK_MAX_BODY = 1_000_000
CLOSE = (b"connection", b"close")


class BodyLimit:
    """Pure ASGI middleware: per-route byte limits and authentication before the body."""

    def __init__(self, app: ASGIApp, limit: int, artifact_limit: int) -> None:
        self.app, self.limit, self.artifact_limit = app, limit, artifact_limit

    def limit_for(self, path: str) -> int:
        # Artifacts and an agent's saved conversation (checkpoint, or with a question) are
        # legitimately large; everything else is held to the small limit.
        if path == "/slack/events":
            return min(self.limit, SLACK_MAX_BODY)
        if "/artifacts/" in path or path.endswith(("/checkpoint", "/request-input")):
            return self.artifact_limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _send(_too_large(limit), scope, send)
            return
        if scope["path"].startswith("/api/"):
            try:
                request = Request(scope)
                scope[AUTHENTICATED] = await principal(request, app_state(request).db)
            except MetaAgentError as exc:
                await _send(problems.domain_problem(exc), scope, send)
                return
        await _Counted(self.app, limit).run(scope, receive, send)


class _Counted:
    """One request: counts what the app reads, answers 413 once it passes the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self.received = 0
        self.refused = self.started = self.complete = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                self.complete = not message.get("more_body", False)
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.refused = True
                    if not self.started:
                        await _send(_too_large(self.limit), scope, send)
                    # To the app the client is gone (which it is about to be): a reader
                    # gets Starlette's ClientDisconnect and stops.
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if self.refused:
                return  # the client has its 413; whatever the app answers is not for it
            if message["type"] == "http.response.start":
                self.started = True
                if not self.complete:
                    # Answered before the body was all read (refused by a key check the
                    # app does itself, as /mcp's): close rather than read the rest.
                    message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not self.refused:
                raise
            log.debug("body over %d bytes on %s: the app's error was dropped", self.limit, scope["path"])


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1").strip())
    return None


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return (length is not None and length != "0") or _header(scope, b"transfer-encoding") is not None


def _too_large(limit: int) -> JSONResponse:
    return problems.problem(413, "payload_too_large", "Payload too large", f"the body is over {limit} bytes")


async def _send(response: JSONResponse, scope: Scope, send: Send) -> None:
    # Closing is what stops a client still sending a large body: kept alive, the server would
    # have to read (and discard) all of it before the next request.
    response.raw_headers.append(CLOSE)

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, nothing, send)
