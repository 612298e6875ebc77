"""What the MCP tools return: pydantic models, published as each tool's output schema.

The control plane's JSON (docs/protocol.md) is trimmed to what an assistant needs to act;
every task carries `board_url`, the page where a person can watch it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from kernel.statuses import TERMINAL, TaskStatus

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
    def of(cls, a: dict[str, Any]) -> AgentInfo:
        return cls(
            name=a["name"],
            description=a.get("description") or "",
            runtime=a.get("runtime") or "",
            model=a.get("model"),
            tools=a.get("tools") or [],
            default_queue=a.get("default_queue"),
            parameters={k: ParameterInfo(**_known(v)) for k, v in (a.get("parameters") or {}).items()},
            risky=bool(a.get("risky")),
        )


def _known(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        return {}
    return {k: spec[k] for k in ("description", "required", "default") if k in spec}


class TeamInfo(BaseModel):
    name: str = Field(description="Pass this as `team` to create_task.")
    description: str
    coordinator: str
    members: list[str] = []
    default_queue: str | None = None

    @classmethod
    def of(cls, t: dict[str, Any]) -> TeamInfo:
        return cls(
            name=t["name"],
            description=t.get("description") or "",
            coordinator=t.get("coordinator") or "",
            members=t.get("members") or [],
            default_queue=t.get("default_queue"),
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

    @classmethod
    def of(cls, q: dict[str, Any]) -> QueueInfo:
        return cls(
            name=q["name"],
            description=q.get("description") or "",
            environment=q.get("environment") or "",
            active_workers=int(q.get("active_workers") or 0),
            pending_tasks=int(q.get("pending_tasks") or 0),
            running_tasks=int(q.get("running_tasks") or 0),
        )


class QueueList(BaseModel):
    queues: list[QueueInfo]


class Question(BaseModel):
    question: str
    choices: list[str] = Field([], description="Allowed answers; empty means free text.")
    key: str = "answer"

    @classmethod
    def of(cls, pending: dict[str, Any]) -> Question:
        # `key` names what is asked (a parameter, a tool call): the worker's `ref`. The id the
        # server issued for the question is sent back by respond_to_task itself.
        return cls(**{**pending, "key": pending.get("ref") or pending.get("key") or "answer"})


class ErrorInfo(BaseModel):
    code: str
    message: str


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
    pending_input: Question | None = Field(None, description="The question, while status is requires_input.")
    last_seq: int = Field(
        description="Seq of the task's latest event; stream_task(after=...) goes on from it."
    )
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    board_url: str

    @classmethod
    def of(cls, t: dict[str, Any], board_url: str) -> TaskInfo:
        pending = t.get("pending_input")
        return cls(
            id=t["id"],
            agent=t.get("agent"),
            team=t.get("team"),
            queue=t.get("queue") or "",
            status=t["status"],
            phase=t.get("phase"),
            prompt=t.get("prompt") or "",
            parameters=t.get("parameters") or {},
            source=t.get("source") or "",
            attempt=int(t.get("attempt") or 0),
            cancel_requested=bool(t.get("cancel_requested")),
            retry_of=t.get("retry_of"),
            result=t.get("result"),
            error=ErrorInfo(**t["error"]) if t.get("error") else None,
            pending_input=Question.of(pending) if pending else None,
            last_seq=int(t.get("last_seq") or 0),
            created_at=str(t.get("created_at") or ""),
            started_at=t.get("started_at"),
            finished_at=t.get("finished_at"),
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
    def of(cls, t: dict[str, Any], board_url: str) -> TaskSummary:
        prompt = t.get("prompt") or ""
        return cls(
            id=t["id"],
            agent=t.get("agent"),
            team=t.get("team"),
            queue=t.get("queue") or "",
            status=t["status"],
            prompt=prompt if len(prompt) <= 200 else prompt[:199] + "…",
            created_at=str(t.get("created_at") or ""),
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


def describe_event(event: dict[str, Any], limit: int = 500) -> str:
    """One line for a person or a model: what the event says, without its JSON envelope."""
    kind = str(event.get("kind", ""))
    data = event.get("data") or {}
    if not isinstance(data, dict):
        text = str(data)
    elif kind == "status":
        text = f"status: {data.get('status')}"
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            text += f" ({err.get('code')}: {err['message']})"
    elif kind == "input_requested":
        text = f"needs input: {data.get('question', '')}"
        if data.get("choices"):
            text += f" [{' / '.join(map(str, data['choices']))}]"
    elif kind == "input_received":
        text = f"answer received ({data.get('ref') or data.get('key', 'answer')})"
    elif kind.startswith("tool_"):
        name = data.get("name") or data.get("tool") or data.get("tool_call_id") or ""
        detail = next((data[k] for k in ("output", "line", "result", "arguments", "args") if k in data), "")
        text = f"{kind.removeprefix('tool_')} {name}: {_flat(detail)}".rstrip(": ")
    else:
        picked = next(
            (data[k] for k in ("line", "message", "text", "delta", "content", "output", "name") if k in data),
            None,
        )
        text = _flat(picked if picked is not None else data)
    text = " ".join(text.split()) if kind != "message_delta" else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
