"""`POST /chat`: a message to the meta agent in, its reply and what it did out, as SSE.

The agent runs in this process and calls this same control plane over HTTP with the
caller's key (through the MCP tools), so it can do exactly what the caller may do. The turn
is `meta_agent.conversation`'s (shared with Slack): the conversation is stored after it, so
the next message (after a restart too) goes on from it. Frames (`event:` = the `type`,
`data:` = JSON):

    conversation {conversation_id}        first, so a client can resume even if the turn fails
    text {text}                           pieces of the reply
    tool_call / tool_result / progress / task / log   what the agent does (see meta_agent.agent)
    approval {approval_id, tool, arguments, plan}     a plan waits for the person's decision:
                                          send it back as `decision` (or a plain yes / no)
    error {code, message}                 the model call failed
    done {conversation_id, reply, task_ids, approval}

Refused before any frame: 409 `model_not_configured` (names META_AGENT_MODEL), 404 unknown
conversation, 409 `approval_not_pending`, 429 when the key already runs
`max_chat_turns_per_key` turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator

from board_api.deps import Operator
from board_api.feeds import SSE_HEADERS, SSE_RESPONSES, sse
from board_api.limits import LimitedStream
from board_api.state import app_state
from kernel import errors
from kernel.chat import Decision, PreparedTurn
from store.auth import bearer_token
from store.tasks import SOURCES

router = APIRouter()


class DecisionIn(BaseModel):
    approval_id: str = Field(min_length=1, max_length=100)
    approve: bool
    reason: str | None = Field(default=None, max_length=4000)


class ChatIn(BaseModel):
    message: str | None = Field(default=None, min_length=1, max_length=100_000)
    decision: DecisionIn | None = Field(
        default=None, description="Approve or reject the plan an `approval` frame asked about."
    )
    conversation_id: str | None = Field(default=None, max_length=100)
    source: str | None = Field(
        default=None, description="Where the person is: board (default), slack, cli, api, ..."
    )
    requested_by: str | None = Field(
        default=None, max_length=200, description="Who is asking (default: the API key's name)."
    )

    @model_validator(mode="after")
    def _one_of(self) -> ChatIn:
        if (self.message is None) == (self.decision is None):
            raise ValueError("send either `message` or `decision`")
        if self.decision is not None and not self.conversation_id:
            raise ValueError("a `decision` needs the `conversation_id` it belongs to")
        return self


@router.post("/chat", response_class=StreamingResponse, responses=SSE_RESPONSES)
async def chat(body: ChatIn, request: Request, p: Operator) -> StreamingResponse:
    """Send a message (or a decision on a plan) to the meta agent; its reply and actions
    stream back as SSE."""
    if body.source is not None and body.source not in SOURCES:
        raise errors.Invalid(f"source must be one of {', '.join(sorted(SOURCES))}", code="invalid_source")
    api_key = bearer_token(request.headers.get("authorization", ""))
    base = str(request.base_url).rstrip("/")
    requester = body.requested_by or p.name
    state = app_state(request)
    chat = state.chat
    if chat is None:
        raise errors.Unavailable("this server runs without the meta agent", code="chat_unavailable")
    prepared = await chat.prepare(
        base_url=base,
        api_key=api_key,
        message=body.message,
        decision=(
            Decision(
                body.decision.approval_id, body.decision.approve, by=requester, reason=body.decision.reason
            )
            if body.decision
            else None
        ),
        conversation_id=body.conversation_id,
        source=body.source or "board",
        requested_by=body.requested_by or (None if body.conversation_id else p.name),
    )
    release = state.chat_limiter.acquire(p)
    return LimitedStream(_frames(prepared), release, media_type="text/event-stream", headers=SSE_HEADERS)


async def _frames(prepared: PreparedTurn) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def work() -> None:
        try:
            await prepared.run(queue.put_nowait)
        finally:
            queue.put_nowait(None)

    job = asyncio.create_task(work())
    try:
        while (event := await queue.get()) is not None:
            yield _frame(event)
        await job
    finally:
        if not job.done():  # the client went away mid-turn: stop (the turn saves what it has)
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job


def _frame(event: dict[str, Any]) -> bytes:
    return sse(json.dumps(event, default=str, separators=(",", ":")), event=str(event["type"]))
