"""The `llm` runtime: the agent's model, through litellm, in a loop with its tools.

    messages = [instructions, prompt + parameters]
    loop: settle the open tool calls (run, ask a human, or report as interrupted)
          check the budgets -> one streamed model turn -> checkpoint
          no tool calls in the turn -> its text is the result

The conversation is checkpointed after every completed step, so a task resumes where it
stopped on whichever worker claims it next: after a human answered (`ask_user`, approvals,
stored in `ctx.inputs` under the tool call's id) or after a crash. A tool call the
checkpoint shows as started but not finished is reported to the model as interrupted and
never run again. Events: `message_delta` (coalesced), `message_reset` (the deltas since the
last `message` are void: a retry after the stream broke), `message`, `tool_started`,
`tool_output`, `tool_completed` (one `tool_call_id` pairs them), `usage` (running totals),
`log` (provider retries). The phase moves to `executing` with the first answer or tool call.
How the model is called comes from the worker's defaults and the agent's `provider`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Coroutine, Mapping
from contextlib import AsyncExitStack
from typing import Any, NotRequired, TypedDict, TypeVar

from kernel.llm import cut_message
from kernel.llm_settings import KeyMissing, keyless, with_agent_provider
from sdk.client import ApiError
from worker.builtins import BUILTIN, Tool, ToolEnv, ToolError, schema, toolkit
from worker.builtins.ask import question_of
from worker.builtins.base import Prepare
from worker.builtins.delegate import Delegate
from worker.builtins.mcp import connect_mcp_servers
from worker.policy import Policy
from worker.provider import ModelReply, ProviderConfig, complete, load_litellm, tool_arguments
from worker.runtime import InputRequested, Outcome, TaskContext, TaskFailed
from worker.shapes import as_dict

__all__ = ["LlmRuntime"]

CHECKPOINT_VERSION = 1
EVENT_OUTPUT_CHARS = 4000
INTERRUPTED = (
    "interrupted: the worker running this tool call stopped before it finished, so its result is "
    "unknown. It was not run again; check its effects before repeating it."
)
T = TypeVar("T")
_EXECUTING_KINDS = frozenset({"message_delta", "message", "tool_started", "tool_completed"})


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    cost: float  # USD, as litellm prices it


class LoopState(TypedDict):
    """What the checkpoint of an `llm` task holds (JSON; `v` is CHECKPOINT_VERSION)."""

    v: int
    messages: list[dict[str, Any]]  # the conversation, in the OpenAI format
    calls: list[dict[str, Any]]  # the open tool calls of the last turn: {id, name, arguments, state}
    steps: int
    usage: Usage
    seconds: NotRequired[float]  # active run time so far (older checkpoints lack it)


class LlmRuntime:
    """Runs `llm` agents. `api_base`/`api_key` go to litellm for every call when given
    (`meta-agent worker start --llm-api-base/--llm-api-key`); else litellm's own variables.
    An agent's `provider` settings override them; its `api_key_env` is read from `environ`."""

    def __init__(
        self,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.api_base = api_base
        self.api_key = api_key
        self.retries = retries
        self.backoff = backoff
        self.environ = os.environ if environ is None else environ
        self._used = False

    async def run(self, ctx: TaskContext) -> Outcome:
        model = str(ctx.agent.get("model") or "").strip()
        if not model:
            raise TaskFailed(
                "model_not_configured",
                f"agent {ctx.agent.get('name')!r} has no model: set its `model` to a litellm model string "
                "(e.g. openai/gpt-4o-mini, anthropic/claude-sonnet-4-5, ollama/llama3) with `meta-agent agents "
                "apply`, and give the worker the provider's credentials (--llm-api-key / META_AGENT_LLM_API_KEY "
                "or the provider's own variable such as OPENAI_API_KEY)",
            )
        policy = Policy.of(ctx.agent)
        names = [str(n) for n in ctx.agent.get("tools") or ()]
        unknown = [n for n in names if n not in BUILTIN]
        if unknown:
            ctx.emit("log", {"level": "warning", "message": f"unknown tools ignored: {', '.join(unknown)}"})
        tools = {n: t for n, t in toolkit(names).items() if policy.allows_tool(n)}
        # The agent's named secrets can hold its provider key (`provider.api_key_env`).
        environ = {**self.environ, **ctx.secrets} if ctx.secrets else self.environ
        defaults = keyless(
            ProviderConfig(model, self.api_base, self.api_key, self.retries, self.backoff), environ
        )
        try:
            config = with_agent_provider(defaults, ctx.agent.get("provider"), environ)
        except KeyMissing as exc:
            raise TaskFailed("provider_key_missing", str(exc)) from None
        # Importing litellm takes seconds; in a thread, the worker's heartbeats keep going.
        await asyncio.to_thread(load_litellm)
        self._used = True
        if ctx.task.get("team") and policy.allows_tool("delegate"):
            tools["delegate"] = await _delegate_tool(ctx)
        async with AsyncExitStack() as stack:
            servers = [d for s in ctx.agent.get("mcp_servers") or () if (d := as_dict(s)) is not None]
            lent = await connect_mcp_servers(servers, stack)
            tools.update({n: t for n, t in lent.items() if policy.allows_tool(n)})
            return await _Loop(ctx, config, tools, policy).run()

    async def aclose(self) -> None:
        """Close litellm's pooled HTTP clients (at worker shutdown)."""
        if self._used:
            await load_litellm().close_litellm_async_clients()


async def _delegate_tool(ctx: TaskContext) -> Delegate:
    """The `delegate` tool of a team task's coordinator, listing the team's members."""
    if ctx.client is None:
        raise TaskFailed("team_unavailable", "a team task needs a worker connected to the control plane")
    try:
        team = await ctx.client.teams.get(str(ctx.task["team"]))
        members: dict[str, str] = {}
        for name in team.members:
            members[name] = (await ctx.client.agents.get(name)).description
    except ApiError as exc:
        raise TaskFailed("team_unavailable", f"cannot load team {ctx.task['team']!r}: {exc.detail}") from exc
    if not members:
        raise TaskFailed("team_unavailable", f"team {team.name!r} has no members to delegate to")
    return Delegate(team.name, members)


def _first_messages(ctx: TaskContext) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = str(ctx.agent.get("instructions") or "").strip()
    if ctx.task.get("team"):
        instructions += (
            f"\n\nYou coordinate the team {ctx.task['team']!r}: split the work, hand the parts to the "
            "members with the delegate tool (several calls in one turn run in parallel), then compose "
            "the final answer from their results."
        )
        instructions = instructions.strip()
    if instructions:
        messages.append({"role": "system", "content": instructions})
    prompt = ctx.prompt
    if ctx.parameters:
        prompt += "\n\nParameters:\n" + json.dumps(ctx.parameters, indent=2, ensure_ascii=False)
    messages.append({"role": "user", "content": prompt})
    return messages


class _Loop:
    """One task's conversation; `state` is exactly what the checkpoint holds."""

    def __init__(
        self, ctx: TaskContext, config: ProviderConfig, tools: dict[str, Tool], policy: Policy
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.tools = tools
        self.schemas = [schema(t) for t in tools.values()]
        self.policy = policy
        saved = as_dict(ctx.checkpoint)
        if saved is not None and saved.get("v") == CHECKPOINT_VERSION:
            self.state: LoopState = json.loads(json.dumps(saved))
        else:
            self.state = {
                "v": CHECKPOINT_VERSION,
                "messages": _first_messages(ctx),
                "calls": [],
                "steps": 0,
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0},
                "seconds": 0.0,
            }
        self._base_seconds = float(self.state.get("seconds") or 0.0)
        self._since = time.monotonic()
        self._executing = False

    # --- plumbing ------------------------------------------------------------------------

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        if not self._executing and kind in _EXECUTING_KINDS:
            self._executing = True
            self.ctx.set_phase("executing")
        self.ctx.emit(kind, data)

    def seconds(self) -> float:
        return self._base_seconds + (time.monotonic() - self._since)

    def snapshot(self) -> dict[str, Any]:
        self.state["seconds"] = round(self.seconds(), 3)
        return json.loads(json.dumps(self.state))

    async def checkpoint(self) -> None:
        await self.ctx.save_checkpoint(self.snapshot())

    def ask(self, question: str, choices: list[str] | None, key: str) -> InputRequested:
        return InputRequested(question, choices, key, checkpoint=self.snapshot())

    async def guard(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Await `coro`, stopping it at once on a cancel or when `max_seconds` runs out."""
        work = asyncio.ensure_future(coro)
        stop = asyncio.ensure_future(self.ctx.cancelled.wait())
        limit = self.policy.max_seconds
        left = None if limit is None else max(0.0, limit - self.seconds())
        try:
            done, _ = await asyncio.wait({work, stop}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
                await asyncio.wait({work})
        if work in done:
            return work.result()
        if self.ctx.cancelled.is_set():
            raise TaskFailed("cancelled", f"stopped on request during {what}")
        raise TaskFailed("policy_violation", f"policy rule max_seconds: the task ran longer than {limit:g} s")

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> Outcome:
        st = self.state
        while True:
            await self.settle()
            usage = st["usage"]
            self.policy.check_budget(st["steps"], self.seconds(), usage["cost"])
            reply: ModelReply = await self.guard(
                complete(
                    self.config,
                    st["messages"],
                    self.schemas,
                    on_delta=lambda text: self.emit("message_delta", {"text": text}),
                    on_log=lambda line: self.ctx.emit("log", {"level": "warning", "message": line}),
                    on_reset=lambda why: self.ctx.emit("message_reset", {"reason": why}),
                ),
                "the model call",
            )
            st["steps"] += 1
            usage["prompt_tokens"] += reply.prompt_tokens
            usage["completion_tokens"] += reply.completion_tokens
            usage["cost"] = round(usage["cost"] + reply.cost, 8)
            calls = [
                {"id": c["id"], "name": c["name"], "arguments": c["arguments"]} for c in reply.tool_calls
            ]
            self.emit("message", {"role": "assistant", "text": reply.content, "tool_calls": calls})
            self.ctx.emit("usage", {**usage, "steps": st["steps"]})
            if reply.finish_reason == "length":  # cut text or half a tool call: not a result
                raise TaskFailed("max_tokens", cut_message(self.config))
            st["messages"].append(reply.message())
            if not calls:
                return Outcome({"output": reply.content}, usage={**usage, "steps": st["steps"]})
            st["calls"] = [{**c, "state": "queued"} for c in calls]
            await self.checkpoint()

    async def settle(self) -> None:
        """Give every open tool call of the last turn its result, in order."""
        calls = self.state["calls"]
        await self.prepare(calls)
        while calls:
            call = calls[0]
            result = await self.resolve(call)
            self.state["messages"].append({"role": "tool", "tool_call_id": call["id"], "content": result})
            calls.pop(0)
            await self.checkpoint()

    async def prepare(self, calls: list[dict[str, Any]]) -> None:
        """Start every queued call of a preparing tool (delegations) before awaiting any."""
        prepared = False
        for call in calls:
            tool = self.tools.get(call["name"])
            prepare: Prepare | None = getattr(tool, "prepare", None)
            if prepare is None or call.get("state") != "queued" or self.policy.needs_approval(call["name"]):
                continue
            try:
                args = tool_arguments(call["arguments"])
                self.policy.check_call(call["name"], args)
                await self.guard(prepare(args, self.tool_env(call)), f"the {call['name']} tool")
                prepared = True
            except (ToolError, ValueError):
                continue  # the call itself reports it, in order
            except TaskFailed as exc:
                if exc.code != "policy_violation":
                    raise
        if prepared:
            await self.checkpoint()

    def tool_env(self, call: dict[str, Any]) -> ToolEnv:
        cid = call["id"]
        return ToolEnv(
            self.ctx,
            cid,
            lambda chunk: self.ctx.emit("tool_output", {"tool_call_id": cid, "chunk": chunk}),
            call,
        )

    def completed(self, call: dict[str, Any], status: str, text: str, started: float | None = None) -> None:
        data: dict[str, Any] = {"tool_call_id": call["id"], "name": call["name"], "status": status}
        data["output" if status == "success" else "error"] = text[:EVENT_OUTPUT_CHARS]
        data["duration_ms"] = round((time.monotonic() - started) * 1000) if started else 0
        self.emit("tool_completed", data)

    def started(self, call: dict[str, Any], args: Any) -> float:
        self.emit("tool_started", {"tool_call_id": call["id"], "name": call["name"], "arguments": args})
        return time.monotonic()

    async def resolve(self, call: dict[str, Any]) -> str:
        """The result text the model gets for `call` (may ask a human, or fail the task)."""
        cid, name = call["id"], call["name"]
        tool = self.tools.get(name)
        if call.get("state") == "started":
            if tool is not None and getattr(tool, "resumable", False):
                return await self.execute(call, tool, tool_arguments(call["arguments"]))
            self.completed(call, "interrupted", INTERRUPTED)
            return INTERRUPTED
        try:
            args = tool_arguments(call["arguments"])
        except ValueError as exc:
            self.completed(call, "failed", f"invalid arguments: {exc}", self.started(call, call["arguments"]))
            return f"error: the arguments are not a JSON object ({exc})"
        try:
            self.policy.check_call(name, args)
        except TaskFailed as violation:
            self.completed(call, "denied", violation.message, self.started(call, args))
            raise
        if tool is None:
            msg = f"error: there is no tool {name!r}; available: {', '.join(self.tools) or 'none'}"
            self.completed(call, "failed", msg, self.started(call, args))
            return msg
        # Only a call parked on a question reads an answer: providers reuse call ids
        # (`call_0` every turn), so a fresh call finding an old answer under its id must
        # not take it as its own (an old "approve" approving a later command).
        answer = self.ctx.inputs.get(cid) if call.get("state") in ("asking", "approval") else None
        if name == "ask_user":
            if answer is None:
                try:
                    question, choices = question_of(args)
                except ToolError as exc:
                    self.completed(call, "failed", str(exc), self.started(call, args))
                    return f"error: {exc}"
                self.started(call, args)
                call["state"] = "asking"
                raise self.ask(question, choices, cid)
            self.completed(call, "success", str(answer))
            return f"The user answered: {answer}"
        if self.policy.needs_approval(name):
            if answer is None:
                call["state"] = "approval"
                shown = args.get("command") if name == "bash" else json.dumps(args, ensure_ascii=False)
                question = f"Approve this {name} call?\n{shown}"
                self.ctx.emit("log", {"level": "info", "message": f"waiting for approval: {name} {shown}"})
                raise self.ask(question, ["approve", "deny"], cid)
            if str(answer).strip().lower() != "approve":
                reason = f"denied by the user (answer: {answer}); do not try this call again"
                self.completed(call, "denied", reason, self.started(call, args))
                return reason
        return await self.execute(call, tool, args)

    async def execute(self, call: dict[str, Any], tool: Tool, args: dict[str, Any]) -> str:
        resumed = call.get("state") == "started"
        call["state"] = "started"
        await self.checkpoint()  # from here on, a crash means "interrupted", never a re-run
        t0 = time.monotonic() if resumed else self.started(call, args)
        try:
            text = await self.guard(tool.run(args, self.tool_env(call)), f"the {tool.name} tool")
        except InputRequested as question:  # a delegation's child asks: the checkpoint goes along
            raise self.ask(question.question, question.choices, str(question.key)) from None
        except TaskFailed as exc:
            self.completed(call, "interrupted", exc.message, t0)
            raise
        except (ToolError, OSError, ValueError) as exc:
            self.completed(call, "failed", str(exc), t0)
            return f"error: {exc}"
        self.completed(call, "success", str(text), t0)
        return str(text)
