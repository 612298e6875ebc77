"""Tools that create, inspect and act on tasks, and the `task://{task_id}` resource."""

from __future__ import annotations

import json
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from kernel.failures import FailureClass
from tools.apps import BOARD_URI, ui_meta
from tools.backend import Backend, Client
from tools.catalog import READ_ONLY
from tools.models import EventLine, Status, TaskCreated, TaskInfo, TaskList, TaskSummary, describe_event

__all__ = ["TaskId", "register"]

TaskId = Annotated[str, Field(min_length=1, max_length=100)]
Name = Annotated[str, Field(min_length=1, max_length=64)]

WRITES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
CANCELS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
ANSWERS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
RECENT_EVENTS = 50


async def _waiting_note(c: Client, queue: str) -> str | None:
    q = await c.queues.get(queue)
    if q.active_workers:
        return None
    return (
        f"No worker is live on queue {queue!r} yet: the task waits as pending until one starts "
        f"(`meta-agent worker start --queue {queue}`)."
    )


def _plan(text: str | None) -> dict[str, Any] | None:
    """The task's `plan` (sdk.schemas.PlanIn): the text the meta agent stated, with its
    approval line when a person approved it."""
    return {"text": text.strip()} if text and text.strip() else None


def register(mcp: MCPServer, backend: Backend) -> None:
    # In this order: clients list the tools as they were registered.
    _register_create(mcp, backend)
    _register_reads(mcp, backend)
    _register_actions(mcp, backend)
    _register_resource(mcp, backend)


def _register_create(mcp: MCPServer, backend: Backend) -> None:
    @mcp.tool(title="Create a task", annotations=WRITES)
    async def create_task(
        prompt: Annotated[
            str,
            Field(
                description="The user's request plus any context the agent needs.",
                min_length=1,
                max_length=100_000,
            ),
        ],
        agent: Annotated[Name | None, Field(description="Agent name (from list_agents).")] = None,
        team: Annotated[Name | None, Field(description="Team name, instead of an agent.")] = None,
        queue: Annotated[
            Name | None,
            Field(description="Queue name (from list_queues); omit for the agent's default queue."),
        ] = None,
        parameters: Annotated[
            dict[str, Any] | None,
            Field(description='The agent\'s parameters, e.g. {"namespace": "prod"}.'),
        ] = None,
        plan: Annotated[
            str | None,
            Field(
                description="The plan you stated to the user (agent, queue, what it does, the risk); "
                "shown with the task.",
                max_length=8000,
            ),
        ] = None,
    ) -> TaskCreated:
        """Start a durable task: an agent (or team) runs `prompt` on a worker. Give exactly
        one of agent or team. Returns the task id and board_url; follow it with stream_task."""
        if bool(agent) == bool(team):
            raise ToolError("Give exactly one of `agent` or `team` (call list_agents to see the names).")
        async with backend.client("create the task") as c:
            # No queue: the control plane's rule picks one (store/tasks.py `_resolve_queue`).
            task = await c.executions.create(
                agent=agent,
                team=team,
                queue=queue,
                prompt=prompt,
                parameters=parameters,
                plan=_plan(plan),
            )
            note = await _waiting_note(c, task.queue)
        return TaskCreated.of(task, backend.board_link(task.id), note)


def _register_reads(mcp: MCPServer, backend: Backend) -> None:
    @mcp.tool(title="Get a task", annotations=READ_ONLY)
    async def get_task(task_id: TaskId) -> TaskInfo:
        """Show one task: status, pending question, result or error, timings."""
        async with backend.client(f"get task {task_id!r}") as c:
            task = await c.executions.get(task_id)
        return TaskInfo.of(task, backend.board_link(task.id))

    @mcp.tool(title="List tasks", annotations=READ_ONLY, meta=ui_meta(BOARD_URI))  # MCP Apps board
    async def list_tasks(
        status: Status | None = None,
        agent: Name | None = None,
        queue: Name | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        cursor: Annotated[
            str | None, Field(description="next_cursor of the previous page.", max_length=200)
        ] = None,
        failure: Annotated[
            FailureClass | None,
            Field(description="Only failed tasks of this failure class (e.g. policy_violation)."),
        ] = None,
    ) -> TaskList:
        """List tasks, newest first, optionally filtered."""
        async with backend.client("list the tasks") as c:
            page = await c.executions.list(
                status=status, agent=agent, queue=queue, limit=limit, cursor=cursor, failure=failure
            )
        return TaskList(
            tasks=[TaskSummary.of(t, backend.board_link(t.id)) for t in page.items],
            next_cursor=page.next_cursor,
        )


def _register_actions(mcp: MCPServer, backend: Backend) -> None:
    @mcp.tool(title="Cancel a task", annotations=CANCELS)
    async def cancel_task(task_id: TaskId) -> TaskInfo:
        """Cancel an unfinished task (a running one stops within seconds)."""
        async with backend.client(f"cancel task {task_id!r}") as c:
            task = await c.executions.cancel(task_id)
        return TaskInfo.of(task, backend.board_link(task.id))

    @mcp.tool(title="Answer a task's question", annotations=ANSWERS)
    async def respond_to_task(
        task_id: TaskId,
        answer: Annotated[
            str,
            Field(
                description="The user's answer (one of the choices, if any).",
                min_length=1,
                max_length=100_000,
            ),
        ],
    ) -> TaskInfo:
        """Send the user's answer to a task in requires_input (never invent one); it resumes.
        Then call stream_task again."""
        async with backend.client(f"answer task {task_id!r}") as c:
            task = await c.executions.get(task_id)
            waiting = task.status == "requires_input"
            pending = task.pending_input
            choices = pending.choices if pending else []
            if waiting and choices:
                match = next((ch for ch in choices if ch.strip().lower() == answer.strip().lower()), None)
                if match is None:
                    raise ToolError(
                        f"{answer!r} is not one of the choices for this question: {', '.join(choices)}. "
                        "Ask the user to pick one of them."
                    )
                answer = match
            key = pending.key if waiting and pending else None
            task = await c.executions.respond(task_id, answer, key=key)
        return TaskInfo.of(task, backend.board_link(task.id))

    @mcp.tool(title="Retry a task", annotations=WRITES)
    async def retry_task(task_id: TaskId) -> TaskCreated:
        """Run a finished task again as a new task (its retry_of is the old one)."""
        async with backend.client(f"retry task {task_id!r}") as c:
            task = await c.executions.retry(task_id)
        return TaskCreated.of(task, backend.board_link(task.id))


def _register_resource(mcp: MCPServer, backend: Backend) -> None:
    @mcp.resource(
        "task://{task_id}",
        name="task",
        title="Task",
        description="A task with its status, question, result and its latest events.",
        mime_type="application/json",
    )
    async def task_resource(task_id: str) -> str:
        try:
            async with backend.client(f"read task {task_id!r}") as c:
                task = await c.executions.get(task_id)
                after = max(0, task.last_seq - RECENT_EVENTS)
                page = await c.executions.events(task_id, after=after, limit=RECENT_EVENTS)
        except ToolError as exc:
            if "task_not_found" in str(exc):
                raise ResourceNotFoundError(str(exc)) from None
            raise ResourceError(str(exc)) from None
        info = TaskInfo.of(task, backend.board_link(task.id))
        events = [EventLine(seq=e.seq, kind=e.kind, text=describe_event(e.kind, e.data)) for e in page.items]
        body = {"task": info.model_dump(mode="json"), "events": [e.model_dump() for e in events]}
        return json.dumps(body, indent=1, default=str)
