"""`POST /slack/events`: Slack's events, interactions (button presses) and slash commands,
in HTTP mode.

The signature and its timestamp (at most 5 minutes old) are checked here first, before the
body is even parsed: an unsigned request gets 401 and changes nothing. Bolt checks them
again; a body Bolt cannot parse (signed, but malformed) gets 400, not a 500.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Protocol

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_sdk.signature import SignatureVerifier

from kernel.settings import Settings

if TYPE_CHECKING:
    from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler

router = APIRouter()
log = logging.getLogger("integrations.slack")


class _Served(Protocol):
    """What this route needs of the `SlackIntegration` in `app.state.slack` (a protocol: the
    package imports this module, so this module does not import the package)."""

    settings: Settings
    handler: AsyncSlackRequestHandler | None


@router.post("/slack/events", include_in_schema=False)
async def slack_events(request: Request) -> Response:
    slack: _Served | None = getattr(request.app.state, "slack", None)
    handler = None if slack is None else slack.handler
    if slack is None or handler is None:  # Socket Mode, or not started yet
        return JSONResponse({"error": "slack events are not served over HTTP here"}, status_code=404)
    body = await request.body()  # cached: Bolt reads it again
    if not _signed(slack.settings.slack_signing_secret, request, body):
        return JSONResponse({"error": "invalid request"}, status_code=401)
    try:
        return await handler.handle(request)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        log.info("slack: malformed request body: %s", exc)
        return JSONResponse({"error": "malformed request body"}, status_code=400)


def _signed(secret: str | None, request: Request, body: bytes) -> bool:
    if not secret:  # not reached: HTTP mode starts only with a signing secret (`configured`)
        return False
    try:
        return SignatureVerifier(secret).is_valid(
            body=body.decode("utf-8", "replace"),
            timestamp=request.headers.get("x-slack-request-timestamp", ""),
            signature=request.headers.get("x-slack-signature", ""),
        )
    except ValueError:  # a timestamp that is not a number
        return False
