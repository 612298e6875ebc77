"""`delegate`: a team coordinator hands part of the work to a member agent.

Each call creates a child task (linked by `parent_id`) for the member, on the member's queue,
and waits for its end; the child's progress streams into the coordinator's log as this
call's `tool_output`. A child's question surfaces on the coordinator (Requires Input, with
the member's question and choices); the answer is passed on to the child when the
coordinator resumes. Cancelling the coordinator cancels its children (the control plane
cascades it). The call is `resumable`: after a crash or a question it re-attaches to the
same child, never creating a second one.
"""

from __future__ import annotations

import json
from typing import Any

from sdk.client import ApiError, AsyncControlPlaneClient
from sdk.schemas import StreamEnd
from worker.builtins.base import ToolEnv, ToolError
from worker.builtins.shell import clip
from worker.runtime import InputRequested
from worker.shapes import as_dict

__all__ = ["Delegate"]


def _short(value: Any, width: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _client(env: ToolEnv) -> AsyncControlPlaneClient:
    if env.ctx.client is None:  # the tool is only handed out with one (runtimes.llm)
        raise ToolError("delegation needs a worker connected to the control plane")
    return env.ctx.client


class Delegate:
    name = "delegate"
    resumable = True

    def __init__(self, team: str, members: dict[str, str]) -> None:
        listing = "\n".join(f"- {name}: {desc or 'no description'}" for name, desc in sorted(members.items()))
        self.description = (
            f"Hand a task to a member agent of your team {team!r} and wait for its result. Several "
            "delegate calls in one turn run in parallel. Give each member a self-contained prompt. "
            f"Members:\n{listing}"
        )
        self.parameters: dict[str, Any] = {
            "type": "object",
            "properties": {
                "agent": {"type": "string", "enum": sorted(members), "description": "the member agent"},
                "prompt": {"type": "string", "description": "what the member should do, self-contained"},
            },
            "required": ["agent", "prompt"],
        }
        self.members = members

    async def prepare(self, args: dict[str, Any], env: ToolEnv) -> None:
        """Create the child task (once): every delegation of a turn starts before any is awaited."""
        if env.state.get("child"):
            return
        agent, prompt = args.get("agent"), args.get("prompt")
        if agent not in self.members:
            raise ToolError(
                f"{agent!r} is not a member of the team; members: {', '.join(sorted(self.members))}"
            )
        if not isinstance(prompt, str) or not prompt.strip():
            raise ToolError("`prompt` must be a non-empty string")
        client = _client(env)
        try:
            child = await client.executions.create(
                agent=agent, prompt=prompt, parent_id=env.ctx.id, lease_token=env.ctx.token
            )
        except ApiError as exc:
            raise ToolError(f"could not create a task for {agent}: {exc.detail}") from exc
        env.state.update(child=child.id, agent=agent, after=0)
        env.output(f"[{agent}] delegated as task {child.id}\n")

    async def run(self, args: dict[str, Any], env: ToolEnv) -> str:
        await self.prepare(args, env)
        client, child_id, agent = _client(env), env.state["child"], env.state["agent"]
        # As plain JSON, like the task the stream's end carries.
        task = (await client.executions.get(child_id)).model_dump(mode="json")
        if task["status"] == "requires_input":
            await self._answer_or_ask(task, env)
        async for event in client.executions.stream(child_id, after=int(env.state.get("after") or 0)):
            if isinstance(event, StreamEnd):
                task = event.task.model_dump(mode="json") if event.task else None
                break
            env.state["after"] = event.seq
            self._forward(agent, event.model_dump(mode="json"), env)
            if event.kind == "status" and event.data.get("status") == "requires_input":
                now = (await client.executions.get(child_id)).model_dump(mode="json")
                if now["status"] == "requires_input":
                    await self._answer_or_ask(now, env)
        return self._result(agent, task)

    async def _answer_or_ask(self, child: dict[str, Any], env: ToolEnv) -> None:
        asked = int(env.state.get("asked") or 0)
        key = f"{env.call_id}:{asked}"
        answer = env.ctx.inputs.get(key) if asked else None
        if answer is not None and env.state.get("answered") != key:
            env.state["answered"] = key
            try:
                await _client(env).executions.respond(child["id"], str(answer), lease_token=env.ctx.token)
            except ApiError as exc:  # answered elsewhere meanwhile (on the child itself): fine
                if exc.status != 409:
                    raise ToolError(
                        f"could not pass the answer on to {child['agent']}: {exc.detail}"
                    ) from exc
            return
        pending: dict[str, Any] = child.get("pending_input") or {}
        env.state["asked"] = asked + 1
        question = f"{child['agent']} asks (task {child['id']}): {pending.get('question') or '?'}"
        raise InputRequested(question, pending.get("choices") or None, f"{env.call_id}:{asked + 1}")

    @staticmethod
    def _forward(agent: str, event: dict[str, Any], env: ToolEnv) -> None:
        kind = event["kind"]
        data: dict[str, Any] = event.get("data") or {}
        if kind == "message_delta":
            env.output(str(data.get("text") or ""))
        elif kind == "tool_started":
            env.output(f"\n[{agent}] → {data.get('name')} {_short(data.get('arguments'))}\n")
        elif kind == "tool_completed":
            env.output(f"[{agent}] {data.get('status')}: {data.get('name')}\n")
        elif kind == "status":
            env.output(f"\n[{agent}] {data.get('status')}\n")

    @staticmethod
    def _result(agent: str, task: dict[str, Any] | None) -> str:
        if task is None:  # the stream ended without the task (the control plane went away)
            raise ToolError(f"{agent}'s task: its stream ended before the task did; ask again later")
        status = task.get("status")
        if status == "completed":
            result = task.get("result")
            shaped = as_dict(result)
            output = shaped["output"] if shaped is not None and "output" in shaped else result
            text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
            return clip(f"{agent} completed (task {task['id']}):\n{text}")
        error: dict[str, Any] = task.get("error") or {}
        raise ToolError(
            f"{agent}'s task {task['id']} ended {status}: {error.get('code')}: {error.get('message')}"
        )
