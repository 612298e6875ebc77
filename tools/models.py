"""What the MCP tools return: pydantic models, published as each tool's output schema.

The SDK's models (`sdk.schemas`, what the API serves) are trimmed to what an assistant needs
to act; every task carries `board_url`, the page where a person can watch it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, Field, TypeAdapter

from kernel.statuses import TERMINAL, TaskStatus
from sdk.schemas import AgentOut, ErrorOut, PendingInput, QueueOut, TaskOut, TeamOut
from sdk.transport import json_object

__all__ = [
    "AgentCatalog",
    "AgentInfo",
    "ErrorInfo",
    "EventLine",
    "ParameterInfo",
    "Question",
    "QueueInfo",
    "QueueList",
    "StreamResult",
    "TaskCreated",
    "TaskInfo",
    "TaskList",
    "TaskSummary",
    "TeamInfo",
    "describe_event",
]

Status = TaskStatus
FINISHED = TERMINAL

_TIME = TypeAdapter(datetime)


def _time(value: datetime | None) -> str | None:
    """A time as the API's JSON spells it (the tools' output has always carried that string)."""
    return None if value is None else str(_TIME.dump_python(value, mode="json"))


class ParameterInfo(BaseModel):
    description: str = ""
    required: bool = False
    default: Any = None


class AgentInfo(BaseModel):
    name: str = Field(description="Pass this as `agent` to create_task.")
    description: str
    runtime: str = Field(description="llm (a model with tools), command (a fixed program) or noop")
    model: str | None = None
    tools: list[str] = []
    default_queue: str | None = Field(None, description="Queue its tasks go to when none is named.")
    parameters: dict[str, ParameterInfo] = Field(
        {}, description="Named inputs; required ones the agent asks for when missing."
    )
    risky: bool = Field(False, description="Changes things: a plan using it needs the person's approval.")

    @classmethod
    def of(cls, a: AgentOut) -> AgentInfo:
        return cls(
            name=a.name,
            description=a.description,
            runtime=a.runtime,
            model=a.model,
            tools=a.tools,
            default_queue=a.default_queue,
            parameters={k: _parameter(v) for k, v in a.parameters.items()},
            risky=a.risky,
        )


def _parameter(spec: object) -> ParameterInfo:
    # `AgentOut.parameters` is stored JSON: a spec written by hand may lack fields, or not be one.
    if not isinstance(spec, dict):
        return ParameterInfo()
    return ParameterInfo.model_validate(spec)


class TeamInfo(BaseModel):
    name: str = Field(description="Pass this as `team` to create_task.")
    description: str
    coordinator: str
    members: list[str] = []
    default_queue: str | None = None

    @classmethod
    def of(cls, t: TeamOut) -> TeamInfo:
        return cls(
            name=t.name,
            description=t.description,
            coordinator=t.coordinator,
            members=t.members,
            default_queue=t.default_queue,
        )


class AgentCatalog(BaseModel):
    agents: list[AgentInfo]
    teams: list[TeamInfo] = []


class QueueInfo(BaseModel):
    name: str = Field(description="Pass this as `queue` to create_task.")
    description: str
    environment: str
    active_workers: int = Field(description="Live workers serving the queue; 0 means tasks wait there.")
    pending_tasks: int
    running_tasks: int
    can_run: list[str] = Field(
        default=[], description="Agents with prerequisites that a live worker of this queue can run."
    )
    cannot_run: dict[str, list[str]] = Field(
        default={},
        description="Agents with prerequisites that no live worker here can run, with what is missing "
        "(`bin:kubectl`, `env:VAR`, `mcp:NAME`, `environment:LABEL`); their tasks here would wait.",
    )

    @classmethod
    def of(cls, q: QueueOut) -> QueueInfo:
        return cls(
            name=q.name,
            description=q.description,
            environment=q.environment,
            active_workers=q.active_workers,
            pending_tasks=q.pending_tasks,
            running_tasks=q.running_tasks,
            can_run=[f.agent for f in q.prerequisites if f.workers],
            cannot_run={f.agent: f.missing for f in q.prerequisites if not f.workers},
        )


class QueueList(BaseModel):
    queues: list[QueueInfo]


class Question(BaseModel):
    question: str
    choices: list[str] = Field([], description="Allowed answers; empty means free text.")
    key: str = "answer"

    @classmethod
    def of(cls, pending: PendingInput) -> Question:
        # `key` names what is asked (a parameter, a tool call): the worker's `ref`. The id the
        # server issued for the question is sent back by respond_to_task itself.
        return cls(
            question=pending.question, choices=pending.choices, key=pending.ref or pending.key or "answer"
        )


class ErrorInfo(BaseModel):
    code: str
    message: str

    @classmethod
    def of(cls, error: ErrorOut | None) -> ErrorInfo | None:
        return None if error is None else cls(code=error.code, message=error.message)


class TaskInfo(BaseModel):
    id: str
    agent: str | None
    team: str | None
    queue: str
    status: Status
    phase: str | None = None
    prompt: str
    parameters: dict[str, Any] = {}
    source: str
    attempt: int
    cancel_requested: bool = False
    retry_of: str | None = None
    result: Any = None
    error: ErrorInfo | None = None
    failure_class: str | None = Field(
        None, description="A failed task's class (policy_violation, tool_error, ...)."
    )
    failure_hint: str | None = Field(None, description="What to do next about the failure, in one sentence.")
    pending_input: Question | None = Field(None, description="The question, while status is requires_input.")
    last_seq: int = Field(
        description="Seq of the task's latest event; stream_task(after=...) goes on from it."
    )
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    board_url: str

    @classmethod
    def of(cls, t: TaskOut, board_url: str) -> TaskInfo:
        return cls(
            id=t.id,
            agent=t.agent,
            team=t.team,
            queue=t.queue,
            status=t.status,
            phase=t.phase,
            prompt=t.prompt,
            parameters=t.parameters,
            source=t.source,
            attempt=t.attempt,
            cancel_requested=t.cancel_requested,
            retry_of=t.retry_of,
            result=t.result,
            error=ErrorInfo.of(t.error),
            failure_class=t.failure_class,
            failure_hint=t.failure_hint,
            pending_input=Question.of(t.pending_input) if t.pending_input else None,
            last_seq=t.last_seq,
            created_at=_time(t.created_at) or "",
            started_at=_time(t.started_at),
            finished_at=_time(t.finished_at),
            board_url=board_url,
        )


class TaskSummary(BaseModel):
    id: str
    agent: str | None
    team: str | None
    queue: str
    status: Status
    prompt: str = Field(description="The first 200 characters.")
    created_at: str
    board_url: str

    @classmethod
    def of(cls, t: TaskOut, board_url: str) -> TaskSummary:
        prompt = t.prompt
        return cls(
            id=t.id,
            agent=t.agent,
            team=t.team,
            queue=t.queue,
            status=t.status,
            prompt=prompt if len(prompt) <= 200 else prompt[:199] + "…",
            created_at=_time(t.created_at) or "",
            board_url=board_url,
        )


class TaskList(BaseModel):
    tasks: list[TaskSummary]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next (older) page.")


class TaskCreated(BaseModel):
    id: str = Field(description="The task id: follow it with stream_task, inspect it with get_task.")
    status: Status
    agent: str | None
    team: str | None
    queue: str
    retry_of: str | None = None
    board_url: str = Field(description="Where a person can watch the task live.")
    note: str | None = None

    @classmethod
    def of(cls, t: TaskOut, board_url: str, note: str | None = None) -> TaskCreated:
        return cls(
            id=t.id,
            status=t.status,
            agent=t.agent,
            team=t.team,
            queue=t.queue,
            retry_of=t.retry_of,
            board_url=board_url,
            note=note,
        )


class EventLine(BaseModel):
    seq: int
    kind: str
    text: str


class StreamResult(BaseModel):
    task_id: str
    outcome: Literal["finished", "needs_input", "timeout"] = Field(
        description="finished: the task ended; needs_input: it waits for an answer; "
        "timeout: still going, call stream_task again with after=last_seq."
    )
    status: Status
    last_seq: int = Field(description="Pass as `after` to the next stream_task call.")
    question: Question | None = None
    result: Any = None
    error: ErrorInfo | None = None
    answers: list[str] = Field([], description="Answers the user gave through the client during this call.")
    events: list[EventLine] = Field([], description="What happened during this call (the latest 50).")
    next_step: str
    board_url: str


def describe_event(kind: str, payload: object, limit: int = 500) -> str:
    """One line for a person or a model: what an event (its kind and data) says, without its
    JSON envelope."""
    text = _say(kind, payload or {})
    return _cut(" ".join(text.split()) if kind != "message_delta" else text, limit)


def _say(kind: str, payload: object) -> str:
    if not isinstance(payload, dict):
        return str(payload)
    data = cast(dict[str, Any], payload)  # event data is free-form JSON: each kind has its fields
    if kind == "status":
        text = f"status: {data.get('status')}"
        err = json_object(data.get("error"))
        if err is not None and err.get("message"):
            text += f" ({err.get('code')}: {err['message']})"
        return text
    if kind == "input_requested":
        text = f"needs input: {data.get('question', '')}"
        if data.get("choices"):
            text += f" [{' / '.join(map(str, data['choices']))}]"
        return text
    if kind == "input_received":
        return f"answer received ({data.get('ref') or data.get('key', 'answer')})"
    if kind.startswith("tool_"):
        name = data.get("name") or data.get("tool") or data.get("tool_call_id") or ""
        detail = next((data[k] for k in ("output", "line", "result", "arguments", "args") if k in data), "")
        return f"{kind.removeprefix('tool_')} {name}: {_flat(detail)}".rstrip(": ")
    picked = next(
        (data[k] for k in ("line", "message", "text", "delta", "content", "output", "name") if k in data),
        None,
    )
    return _flat(picked if picked is not None else data)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
