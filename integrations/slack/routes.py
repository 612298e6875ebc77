"""`POST /slack/events`: Slack's events, interactions (button presses) and slash commands,
in HTTP mode. Bolt checks the signature and the timestamp (401 otherwise, nothing done)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

router = APIRouter()


@router.post("/slack/events", include_in_schema=False)
async def slack_events(request: Request) -> Response:
    handler = getattr(getattr(request.app.state, "slack", None), "handler", None)
    if handler is None:  # Socket Mode, or not started yet
        return JSONResponse({"error": "slack events are not served over HTTP here"}, status_code=404)
    return await handler.handle(request)  # type: ignore[no-any-return]
