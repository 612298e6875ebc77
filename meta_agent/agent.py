"""The meta agent: an LLM loop whose tools are exactly the MCP tools of `tools/`.

    backend = chat_backend(url, key, source="cli", requested_by="alice")
    agent = MetaAgent(ProviderConfig("openai/gpt-4.1-mini"), backend)
    new_messages = await agent.turn(history, "check the cluster health", emit)

One `turn` takes the person's message, calls the model (`kernel.llm`: streamed,
retried) and runs the tool calls it asks for through the official `mcp` Client, connected
in-process to `tools.server.build_server` with the caller's URL and key, so every call goes
through the REST API and its checks: no second copy of any tool's logic. It ends when the
model answers without a tool call. Everything it does goes to `emit` as small dicts:

    {"type": "text", "text": ...}                         a piece of the reply
    {"type": "text_reset", "reason"}                      drop the reply's text since the last
                                                          tool call: the model call is retried
    {"type": "tool_call", "id", "name", "arguments"}      the model called a tool
    {"type": "tool_result", "id", "name", "is_error", "text"}
    {"type": "progress", "task_id", "message"}            a followed task's event (stream_task)
    {"type": "task", "task_id", "status", "board_url"}    a task it created (or retried)
    {"type": "log", "message"}                            e.g. a retried model call
    {"type": "approval", "approval_id", "tool", "arguments", "plan", "agents"}
                                                          the turn stopped: a plan awaits approval

Approval: before `create_task`/`retry_task` the agent asks `approve(tool, args, plan)`. It
answers True (go), False (refused: the model is told so) or DEFER (a chat surface that
cannot block: the turn ends with `self.pending` set and an `approval` event; the person's
decision later continues the conversation through `resume`).

mcp, litellm and the tools are imported by the functions that need them (the CLI imports
this module only for `exec`/`chat`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal, cast

from kernel.llm import ModelCallFailed, ProviderConfig, complete, tool_arguments

if TYPE_CHECKING:
    from mcp.types import CallToolResult

    from tools.backend import Backend

__all__ = [
    "DEFER",
    "MODEL_SETTING_HELP",
    "SYSTEM_PROMPT",
    "Approve",
    "Emit",
    "MetaAgent",
    "ModelCallFailed",
    "chat_backend",
    "emit_event",
]

Emit = Callable[[dict[str, Any]], Awaitable[None] | None]
DEFER: Literal["defer"] = "defer"
# Asked before a task is created: (tool name, arguments, the plan the model stated) -> go?
Approve = Callable[[str, dict[str, Any], str], Awaitable[bool | Literal["defer"]]]
Elicit = Callable[[Any, Any], Awaitable[Any]]

MODEL_SETTING_HELP = (
    "The meta agent needs a model: set META_AGENT_MODEL to a litellm model (e.g. "
    "openai/gpt-4.1-mini, anthropic/claude-sonnet-4-5) and the provider's key (e.g. "
    "OPENAI_API_KEY), or META_AGENT_LLM_API_BASE and META_AGENT_LLM_API_KEY for an "
    "OpenAI-compatible server."
)

SYSTEM_PROMPT = """\
You are meta-agent: you get operational work done by running agents (LLMs with tools, or
commands) as durable tasks on workers, through your tools.

For work:
1. list_agents; pick the agent (or team) whose description fits. If several fit equally,
   ask which one and stop.
2. list_queues; pick one with active_workers > 0, the agent's default queue first. If none
   is live, say so (`meta-agent worker start --queue NAME`).
3. State the plan: agent, queue, what it does, risk (read-only, changes something or
   destructive), e.g. "Plan: run `k8s-health` on `prod` to check the cluster. Risk: read-only."
4. create_task with the agent, queue and the request as `prompt`; give its board_url.
5. stream_task to follow it. On "needs_input" relay the question and choices word for word
   and stop (never invent an answer); send the reply with respond_to_task.
6. When it ends, report the result or error in a few lines, with the board link.

"Retry it", "cancel that", "what did it say?" mean the last task discussed. Answer plain
questions (what runs, why a task failed, which agents) without creating work. Be brief.
Never claim something ran unless a tool result says so."""

MAX_RESULT_CHARS = 12_000


def chat_backend(
    url: str, api_key: str | None, *, source: str, requested_by: str | None, public_url: str | None = None
) -> Backend:
    """A `tools.backend.Backend` whose tasks carry `source` and `requested_by`."""
    # Imported here: tools.backend imports the MCP SDK (~0.6 s).
    from tools.backend import Backend

    return Backend(url, api_key, public_url, source=source, requested_by=requested_by)


class MetaAgent:
    """The chat-driven agent: one `turn` per message from the person."""

    def __init__(
        self,
        provider: ProviderConfig,
        backend: Any,
        *,
        max_steps: int = 40,
        approve: Approve | None = None,
        elicit: Elicit | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        mcp_client: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        self.provider = provider
        self.backend = backend
        self.max_steps = max_steps
        self.approve = approve
        self.elicit = elicit
        self.system_prompt = system_prompt
        self.mcp_client = mcp_client
        self.task_ids: list[str] = []
        # A plan the person has not decided on yet (set when `approve` answered DEFER).
        self.pending: dict[str, Any] | None = None

    def _session(self) -> AbstractAsyncContextManager[Any]:
        """The MCP client the tools are called through: given, or our tools in-process."""
        if self.mcp_client is not None:
            return self.mcp_client()
        from mcp import Client

        from tools.server import build_server

        kw: dict[str, Any] = {}
        if self.elicit is not None:
            kw["elicitation_callback"] = self.elicit
        return Client(build_server(self.backend), **kw)

    async def turn(
        self,
        history: list[dict[str, Any]],
        message: str,
        emit: Emit,
        *,
        added: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Answer `message` after `history`; returns the messages this turn added.

        `added`, when given, is filled in place, so a caller whose turn was cancelled still
        has what happened. A model failure that retrying cannot fix raises `ModelCallFailed`.
        """
        added = [] if added is None else added
        added.append({"role": "user", "content": message})
        return await self._run(history, added, emit, None)

    async def resume(
        self,
        history: list[dict[str, Any]],
        pending: dict[str, Any],
        approved: bool,
        emit: Emit,
        *,
        by: str | None = None,
        reason: str | None = None,
        added: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Go on after the person decided on the `pending` plan (see `DEFER`)."""
        added = [] if added is None else added
        who = f" ({by})" if by else ""
        if approved:
            added.append({"role": "user", "content": f"Approved{who}: go ahead with the plan."})
            call = {
                "id": f"call_{secrets.token_hex(8)}",
                "name": pending["tool"],
                "arguments": json.dumps(pending["arguments"]),  # as a model sends them
                # The task's plan (tasks.plan) says who approved it.
                "plan": f"{pending.get('plan') or ''}\n\nApproved{f' by {by}' if by else ''}.".strip(),
            }
            added.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["name"], "arguments": call["arguments"]},
                        }
                    ],
                }
            )
        else:
            why = f" Reason: {reason}" if reason else ""
            added.append({"role": "user", "content": f"Rejected{who}: do not run that plan.{why}"})
            call = None
        return await self._run(history, added, emit, call)

    async def _run(
        self,
        history: list[dict[str, Any]],
        added: list[dict[str, Any]],
        emit: Emit,
        approved_call: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        failure: ModelCallFailed | None = None
        async with self._session() as mcp:
            tools = [_openai_tool(t) for t in (await mcp.list_tools()).tools]
            try:
                if approved_call is not None:
                    plan = str(approved_call.get("plan") or "")
                    content = await self._call(mcp, approved_call, plan, emit, approved=True)
                    added.append({"role": "tool", "tool_call_id": approved_call["id"], "content": content})
                await self._loop(mcp, tools, history, added, emit)
            except ModelCallFailed as exc:
                failure = exc  # raised outside the client's task group: not an ExceptionGroup
        if failure is not None:
            raise failure
        return added

    async def _loop(
        self,
        mcp: Any,
        tools: list[dict[str, Any]],
        history: list[dict[str, Any]],
        added: list[dict[str, Any]],
        emit: Emit,
    ) -> None:
        # The model's words go out while it streams (a chat shows them as they come), in
        # order, one emit after the other, without holding up the stream's reader.
        out = _InOrder(emit)

        def on_delta(text: str) -> None:
            out.send({"type": "text", "text": text})

        def on_log(text: str) -> None:
            out.send({"type": "log", "message": text})

        def on_reset(why: str) -> None:
            # A call retried after its text went out: the chat drops that text (it is asked again).
            out.send({"type": "text_reset", "reason": why})

        for _ in range(self.max_steps):
            messages = [{"role": "system", "content": self.system_prompt}, *history, *added]
            try:
                reply = await complete(
                    self.provider, messages, tools, on_delta=on_delta, on_log=on_log, on_reset=on_reset
                )
                await out.drain()
            finally:
                out.cancel()  # only does something when cancelled or failed: nothing is left
            added.append(reply.message())
            if not reply.tool_calls:
                return
            for call in reply.tool_calls:
                if self.pending is not None:
                    # Every call needs a result; the ones after a deferred plan wait for it.
                    content = "Not run: the plan above is waiting for the person's approval."
                else:
                    content = await self._call(mcp, call, reply.content, emit)
                added.append({"role": "tool", "tool_call_id": call["id"], "content": content})
            if self.pending is not None:
                return
        note = f"(stopped after {self.max_steps} steps; ask me to go on)"
        added.append({"role": "assistant", "content": note})
        await emit_event(emit, {"type": "text", "text": note})

    async def _call(
        self, mcp: Any, call: dict[str, Any], plan: str, emit: Emit, *, approved: bool = False
    ) -> str:
        name = call["name"]
        try:
            args = tool_arguments(call["arguments"])
        except ValueError as exc:
            return f"Error: the arguments of {name} are not a JSON object ({exc}); call it again."
        await emit_event(emit, {"type": "tool_call", "id": call["id"], "name": name, "arguments": args})
        if name in ("create_task", "retry_task") and self.approve is not None and not approved:
            verdict = await self.approve(name, args, plan)
            if verdict == DEFER:
                self.pending = {
                    "approval_id": f"apr_{secrets.token_hex(8)}",
                    "tool": name,
                    "arguments": args,
                    "plan": plan or "",
                }
                await emit_event(emit, {"type": "approval", **self.pending})
                return (
                    "Waiting: this plan needs the person's approval before it runs. They have been "
                    "asked; their decision comes as their next message."
                )
            if not verdict:
                text = (
                    "The person did not approve this plan, so no task was created. Ask them "
                    "what to change; do not create the task unless they agree."
                )
                await emit_event(
                    emit,
                    {"type": "tool_result", "id": call["id"], "name": name, "is_error": True, "text": text},
                )
                return text
        task_id = args.get("task_id")

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if message:
                await emit_event(emit, {"type": "progress", "task_id": task_id, "message": message})

        if name == "create_task" and plan and plan.strip():
            # The plan the model stated goes with the task (tasks.plan), so the execution's
            # detail shows what was planned, its risk, and who approved it.
            args = {**args, "plan": plan.strip()[:8000]}
        result = await mcp.call_tool(name, args, progress_callback=on_progress)
        text = _result_text(result)
        await emit_event(
            emit,
            {
                "type": "tool_result",
                "id": call["id"],
                "name": name,
                "is_error": bool(result.is_error),
                "text": text[:2000],
            },
        )
        data: dict[str, Any] = result.structured_content or {}
        if name in ("create_task", "retry_task") and not result.is_error and data.get("id"):
            self.task_ids.append(str(data["id"]))
            await emit_event(
                emit,
                {
                    "type": "task",
                    "task_id": data["id"],
                    "status": data.get("status"),
                    "board_url": data.get("board_url"),
                },
            )
        return text


class _InOrder:
    """Sends events through `emit` (sync or async) from sync callbacks, one at a time, in
    order. `cancel()` drops what was not sent, closing its coroutines (never left unawaited)."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.queue: list[dict[str, Any]] = []
        self.worker: asyncio.Task[None] | None = None

    def send(self, event: dict[str, Any]) -> None:
        self.queue.append(event)
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self.queue:
            await emit_event(self.emit, self.queue.pop(0))

    async def drain(self) -> None:
        while self.worker is not None and not self.worker.done():
            await asyncio.shield(self.worker)
        if self.worker is not None and not self.worker.cancelled():
            self.worker.result()  # an emit that failed fails the turn, as an inline one would

    def cancel(self) -> None:
        self.queue.clear()
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()


async def emit_event(emit: Emit, event: dict[str, Any]) -> None:
    out = emit(event)
    if out is not None:
        await out


def _openai_tool(tool: Any) -> dict[str, Any]:
    """An MCP tool as the model sees it: compact, since every token of the nine tools is
    sent (and, on a small local model, processed) with every turn."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": " ".join((tool.description or "").split()),
            "parameters": compact_schema(tool.input_schema or {"type": "object", "properties": {}}),
        },
    }


# Titles repeat the names; lengths bound what the tool accepts, and it says so to the model
# in an error it can act on when one is exceeded.
_DROPPED_KEYS = frozenset({"title", "minLength", "maxLength"})


def compact_schema(schema: Any) -> Any:
    """A JSON schema without what a model does not need: titles, length limits, a default
    `additionalProperties: true`, and the `anyOf [X, null]` + `default: null` pydantic
    writes for an optional argument (left out of `required`, it is optional already)."""
    # JSON schema is plain JSON: the casts only name what isinstance found.
    if isinstance(schema, list):
        return [compact_schema(s) for s in cast(list[Any], schema)]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in cast(dict[str, Any], schema).items():
        if key in _DROPPED_KEYS or (key == "additionalProperties" and value is True):
            continue
        if key == "properties" and isinstance(value, dict):  # names, not schema keywords
            out[key] = {name: compact_schema(prop) for name, prop in cast(dict[str, Any], value).items()}
        else:
            out[key] = compact_schema(value)
    variants = out.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants and out.get("default", 0) is None:
        rest = [v for v in cast(list[Any], variants) if v != {"type": "null"}]
        if len(rest) == 1:
            del out["anyOf"], out["default"]
            out = {**rest[0], **out}
    return out


def _result_text(result: CallToolResult) -> str:
    """What the model reads: the structured result as JSON, else the text content."""
    if result.structured_content is not None and not result.is_error:
        text = json.dumps(result.structured_content, default=str)
    else:
        parts = [str(getattr(c, "text", "")) for c in result.content]
        text = "\n".join(p for p in parts if p) or ("(error)" if result.is_error else "(no output)")
        if result.is_error:
            text = f"Error: {text}"
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + " …(truncated)"
    return text
