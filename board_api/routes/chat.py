"""`POST /chat`: a message to the meta agent in, its reply and what it did out, as SSE.

The agent runs in this process and calls this same control plane over HTTP with the
caller's key (through the MCP tools), so it can do exactly what the caller may do. The
conversation is stored after the turn, so the next message (after a restart too) goes on
from it. Frames (`event:` = the `type`, `data:` = JSON):

    conversation {conversation_id}        first, so a client can resume even if the turn fails
    text {text}                           pieces of the reply
    tool_call / tool_result / progress / task / log   what the agent does (see meta_agent.agent)
    error {code, message}                 the model call failed
    done {conversation_id, reply, task_ids}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from board_api.deps import DbDep, Operator, SettingsDep
from board_api.feeds import sse
from store import conversations, errors
from store.tasks import SOURCES

router = APIRouter()
log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_RESPONSES = {200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}}


class ModelNotConfigured(errors.MetaAgentError):
    status = 409
    code = "model_not_configured"
    title = "No model configured"


class ChatIn(BaseModel):
    message: str = Field(min_length=1, max_length=100_000)
    conversation_id: str | None = Field(default=None, max_length=100)
    source: str | None = Field(
        default=None, description="Where the person is: board (default), slack, cli, api, ..."
    )
    requested_by: str | None = Field(
        default=None, max_length=200, description="Who is asking (default: the API key's name)."
    )


@router.post("/chat", response_class=StreamingResponse, responses=SSE_RESPONSES)
async def chat(
    body: ChatIn, request: Request, db: DbDep, settings: SettingsDep, p: Operator
) -> StreamingResponse:
    """Send a message to the meta agent; its reply and actions stream back as SSE."""
    if not settings.model:
        from meta_agent.agent import MODEL_SETTING_HELP

        raise ModelNotConfigured(f"{MODEL_SETTING_HELP} Set it where the control plane runs and restart it.")
    if body.source is not None and body.source not in SOURCES:
        raise errors.Invalid(f"source must be one of {', '.join(sorted(SOURCES))}", code="invalid_source")
    async with db.tx() as tx:
        if body.conversation_id:
            conv = await conversations.get_conversation(tx.session, body.conversation_id)
        else:
            conv = await conversations.create_conversation(
                tx, source=body.source or "board", requested_by=body.requested_by or p.name
            )
        conv_id, history = conv.id, list(conv.messages)
        # A follow-up comes from where the conversation is, and from who started it, unless told.
        source = body.source or conv.source
        requester = body.requested_by or conv.requested_by or p.name

    header = request.headers.get("authorization", "")
    api_key = header[7:].strip() if header.lower().startswith("bearer ") else None
    base = str(request.base_url).rstrip("/")
    return StreamingResponse(
        _run(db, settings, body, conv_id, history, source, requester, base, api_key),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _run(
    db: Any,
    settings: Any,
    body: ChatIn,
    conv_id: str,
    history: list[dict[str, Any]],
    source: str,
    requester: str,
    base: str,
    api_key: str | None,
) -> AsyncIterator[bytes]:
    from meta_agent.agent import MetaAgent, ModelCallFailed, chat_backend
    from meta_agent.llm import ProviderConfig

    def frame(event: dict[str, Any]) -> bytes:
        return sse(json.dumps(event, default=str, separators=(",", ":")), event=str(event["type"]))

    yield frame({"type": "conversation", "conversation_id": conv_id})
    backend = chat_backend(
        base, api_key, source=source, requested_by=requester, public_url=settings.public_url or base
    )
    provider = ProviderConfig(settings.model, api_base=settings.llm_api_base, api_key=settings.llm_api_key)
    agent = MetaAgent(provider, backend)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def work() -> list[dict[str, Any]]:
        try:
            return await agent.turn(history, body.message, queue.put_nowait)
        finally:
            queue.put_nowait(None)

    job = asyncio.create_task(work())
    try:
        while (event := await queue.get()) is not None:
            yield frame(event)
        try:
            added = await job
        except ModelCallFailed as exc:
            yield frame({"type": "error", "code": exc.code, "message": exc.message})
            added = [{"role": "user", "content": body.message}]
        except Exception:
            log.exception("meta agent turn failed (conversation %s)", conv_id)
            yield frame(
                {
                    "type": "error",
                    "code": "internal_error",
                    "message": "the meta agent failed; it has been logged",
                }
            )
            added = [{"role": "user", "content": body.message}]
        async with db.tx() as tx:
            await conversations.save_turn(tx, conv_id, [*history, *added], agent.task_ids)
        reply = next((m.get("content") or "" for m in reversed(added) if m.get("role") == "assistant"), "")
        yield frame({"type": "done", "conversation_id": conv_id, "reply": reply, "task_ids": agent.task_ids})
    finally:
        if not job.done():  # the client went away mid-turn
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
