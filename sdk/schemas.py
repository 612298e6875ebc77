"""Request and response bodies of the REST API (see docs/protocol.md)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
    model_validator,
)

from kernel import failures
from kernel.statuses import TaskStatus
from sdk.prereqs import Capabilities, QueueFit, Requires
from sdk.secrets import SecretNames

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Database integers are 64-bit signed (SQLite, BIGINT) and `tasks.attempt` is 32-bit: bound
# numbers at the edge so an absurd value is a 422, never an overflow deep in the driver.
MAX_INT32 = 2**31 - 1
Token = Annotated[
    str, StringConstraints(min_length=1, max_length=128), Field(description="the lease token from the claim")
]
Prompt = Annotated[str, StringConstraints(max_length=100_000)]


class DictLike(BaseModel):
    """A response model that also reads like the JSON object it came from, so code written
    for dict answers (Kubiya's SDK: `result.get("execution_id")`, `result["status"]`) runs
    as it is. Values come as JSON would give them (nested models as dicts, times as text)."""

    def _json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def get(self, key: str, default: Any = None) -> Any:
        return self._json().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._json()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._json()

    def keys(self) -> list[str]:
        return list(self._json())


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    code: str
    message: str


class PendingInput(BaseModel):
    question: str
    choices: list[str] = []
    key: str = "answer"  # issued by the server for this question; send it back with the answer
    ref: str | None = None  # the worker's own name for the question (a parameter, a tool call)


class TaskOut(DictLike):
    id: str
    agent: str | None
    team: str | None
    queue: str
    prompt: str
    parameters: dict[str, Any]
    source: str
    requested_by: str | None
    parent_id: str | None
    retry_of: str | None
    schedule_id: str | None = None  # the schedule that started it (source "schedule")
    status: TaskStatus
    phase: str | None
    attempt: int
    max_attempts: int
    worker_id: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    result: Any
    error: ErrorOut | None
    pending_input: PendingInput | None
    inputs: dict[str, Any]
    usage: dict[str, Any]
    last_seq: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    plan: dict[str, Any] | None = None  # PlanIn's fields, when the meta agent created the task
    # Its agent's prerequisites as tokens (`bin:kubectl`), and while pending why no worker
    # takes it ("waiting: no worker on `q` has `kubectl`"); see the README's Prerequisites.
    needs: list[str] = []
    waiting_for: str | None = None

    @field_validator("needs", mode="before")
    @classmethod
    def _needs(cls, value: Any) -> Any:
        if value is None or value == "":
            return []
        return json.loads(value) if isinstance(value, str) else value  # the column's JSON text

    # Computed from the error code (kernel/failures.py), never stored: a failed task's class
    # and the sentence that says what to do next. None unless the task failed.
    @computed_field
    @property
    def failure_class(self) -> str | None:
        error = self._failure()
        return failures.failure_class(error.code) if error else None

    @computed_field
    @property
    def failure_hint(self) -> str | None:
        error = self._failure()
        return failures.failure_hint(error.code, error.message) if error else None

    def _failure(self) -> ErrorOut | None:
        return self.error if self.status == TaskStatus.failed else None


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class PlanIn(Strict):
    """What the meta agent planned for a task it creates: its stated plan (agent, queue, what
    it does, the risk), ending with who approved it when approval was asked."""

    text: Annotated[str, StringConstraints(max_length=8000)]


class TaskCreate(Strict):
    agent: Name | None = None
    team: Name | None = None
    queue: Name | None = None
    prompt: str = Field(description="What the agent should do")
    parameters: dict[str, Any] = {}
    source: str = "api"
    requested_by: Annotated[str, StringConstraints(max_length=200)] | None = None
    parent_id: str | None = None
    plan: PlanIn | None = None


class ExecuteBody(Strict):
    """Kubiya-compatible: `worker_queue_id` may be a queue id or name."""

    prompt: str
    worker_queue_id: Name | None = None
    parameters: dict[str, Any] = {}
    source: str = "api"
    requested_by: str | None = None


class ExecuteOut(DictLike):
    execution_id: str
    status: str
    task: TaskOut


class InputBody(Strict):
    answer: str
    # The `pending_input.key` of the question being answered: an answer to an older question
    # (a stale button, a second tab) is refused instead of landing on a later one.
    key: str | None = Field(default=None, max_length=64)


class RetryBody(Strict):
    source: str = "api"
    requested_by: Annotated[str, StringConstraints(max_length=200)] | None = None


class EventOut(BaseModel):
    task_id: str
    seq: int
    kind: str
    data: dict[str, Any]
    attempt: int
    created_at: datetime


class StreamEnd(BaseModel):
    """The last item of a task's event stream (SSE `event: end`): the task as it ended."""

    kind: Literal["end"] = "end"
    task: TaskOut | None = None


class EventPage(BaseModel):
    items: list[EventOut]
    last_seq: int
    status: str


class ArtifactOut(BaseModel):
    name: str
    media_type: str
    size: int
    sha256: str
    created_at: datetime


class ArtifactPage(BaseModel):
    items: list[ArtifactOut]


class ParameterSpec(Strict):
    description: str = ""
    required: bool = False
    default: Any = None


class AgentPolicy(Strict):
    """What an `llm` agent may do (enforced by the worker: worker/policy.py). Checked here
    too, so a typo is a 422 when the agent is saved, not a failed task later."""

    allowed_tools: list[str] | None = Field(default=None, description="the only tools it may call")
    deny_commands: list[str] = Field(
        default=[], description="regexes; a bash command matching one fails the task"
    )
    require_approval: list[str] = Field(
        default=[], description="tools whose calls wait for a human's approve/deny"
    )
    max_steps: int | None = Field(default=None, ge=1, le=100_000, description="model calls per task")
    max_seconds: float | None = Field(default=None, gt=0, description="active run time per task")
    max_cost: float | None = Field(default=None, ge=0, description="model cost per task, USD")
    http_allow: list[str] | None = Field(
        default=None, description="the only http_request destinations (hosts, networks)"
    )
    http_deny: list[str] = Field(
        default=[], description="http_request destinations refused (hosts, networks)"
    )

    @field_validator("deny_commands")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _destinations(self) -> AgentPolicy:
        from kernel.netguard import NetGuard

        NetGuard({"http_allow": self.http_allow, "http_deny": self.http_deny})  # ValueError names the entry
        return self


class AgentProvider(Strict):
    """How an `llm` agent calls its model (kernel/llm_settings.py); unset = the worker's.
    The key is never stored here: `api_key_env` names a variable of the worker."""

    api_base: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"
    )
    api_key: None = Field(default=None, description="refused: name the key's variable in api_key_env")
    api_key_env: str | None = Field(default=None, description="NAME of the worker's variable holding the key")
    tool_choice: str | None = Field(
        default=None, description="auto (default), required, none, omit or a tool name"
    )
    first_tool_choice: str | None = Field(
        default=None, description="tool_choice of the first answer to the prompt"
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="output tokens per call (4096)"
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    timeout: float | None = Field(default=None, gt=0, le=3600, description="seconds per model call (600)")
    retries: int | None = Field(default=None, ge=0, le=20, description="retries of a failed call (4)")
    backoff: float | None = Field(default=None, ge=0, le=60, description="first retry delay in s, doubling")
    input_cost_per_token: float | None = Field(
        default=None, ge=0, description="USD; replaces litellm's price"
    )
    output_cost_per_token: float | None = Field(
        default=None, ge=0, description="USD; replaces litellm's price"
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _no_key(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "an agent never stores a key: set api_key_env to the NAME of the worker's "
                "environment variable that holds it"
            )
        return None

    @field_validator("api_base")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, value: str | None) -> str | None:
        from kernel.llm_settings import key_env_problem

        problem = value is not None and key_env_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("tool_choice", "first_tool_choice")
    @classmethod
    def _choice(cls, value: str | None) -> str | None:
        from kernel.llm_settings import tool_choice_problem

        problem = value is not None and tool_choice_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class AgentIn(Strict):
    name: Name
    description: Annotated[str, StringConstraints(max_length=4000)] = ""
    runtime: Literal["llm", "command", "noop"]
    model: str | None = None
    instructions: Annotated[str, StringConstraints(max_length=100_000)] | None = None
    command: list[str] | None = None
    parameters: dict[str, ParameterSpec] = {}
    tools: list[str] = []
    mcp_servers: list[dict[str, Any]] = []
    policy: AgentPolicy = AgentPolicy()
    provider: AgentProvider = AgentProvider()
    secrets: SecretNames = []
    requires: Requires = Requires()
    default_queue: Name | None = None
    timeout_seconds: int = Field(default=600, ge=1, le=7 * 24 * 3600)
    risky: bool = False


class AgentPatch(Strict):
    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=4000)] | None = None
    runtime: Literal["llm", "command", "noop"] | None = None
    model: str | None = None
    instructions: str | None = None
    command: list[str] | None = None
    parameters: dict[str, ParameterSpec] | None = None
    tools: list[str] | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    policy: AgentPolicy | None = None
    provider: AgentProvider | None = None
    secrets: SecretNames | None = None
    requires: Requires | None = None
    default_queue: Name | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    risky: bool | None = None


class AgentOut(BaseModel):
    id: str
    name: str
    description: str
    runtime: str
    model: str | None
    instructions: str | None
    command: list[str] | None
    parameters: dict[str, Any]
    tools: list[str]
    mcp_servers: list[dict[str, Any]]
    policy: dict[str, Any]
    provider: dict[str, Any]
    secrets: list[str] = []
    requires: Requires = Requires()
    default_queue: str | None
    timeout_seconds: int
    risky: bool
    created_at: datetime
    updated_at: datetime


class AgentList(BaseModel):
    items: list[AgentOut]


class TeamIn(Strict):
    name: Name
    description: str = ""
    coordinator: Name
    members: list[Name] = []
    default_queue: Name | None = None


class TeamOut(BaseModel):
    id: str
    name: str
    description: str
    coordinator: str
    members: list[str]
    default_queue: str | None
    created_at: datetime


class TeamList(BaseModel):
    items: list[TeamOut]


class QueueIn(Strict):
    name: Name
    description: Annotated[str, StringConstraints(max_length=4000)] = ""
    environment: Annotated[str, StringConstraints(max_length=64)] = "default"


class QueueOut(BaseModel):
    id: str
    name: str
    description: str
    environment: str
    active_workers: int = 0
    capacity: int = 0
    pending_tasks: int = 0
    running_tasks: int = 0
    created_at: datetime
    # Agents that require something, and whether this queue's live workers can run them.
    prerequisites: list[QueueFit] = []


class QueueList(BaseModel):
    items: list[QueueOut]


class WorkerOut(BaseModel):
    id: str
    queue: str
    name: str
    hostname: str
    capacity: int
    version: str
    running: int
    started_at: datetime
    last_heartbeat_at: datetime


class WorkerList(BaseModel):
    items: list[WorkerOut]


class BoardColumn(BaseModel):
    count: int
    count_capped: bool = Field(
        default=False, description="The column holds at least `count` tasks (counts stop at 1,000)."
    )
    items: list[TaskOut]


class BoardOut(BaseModel):
    columns: dict[str, BoardColumn]


class KeyIn(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    scopes: list[Literal["admin", "operator", "viewer", "worker"]] = Field(min_length=1)
    queues: list[Name] = Field(default=[], max_length=100, description="bind a worker key to these queues")


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    queues: list[str] = []
    created_at: datetime
    revoked_at: datetime | None
    key: str | None = None


class KeyList(BaseModel):
    items: list[KeyOut]


# --- worker protocol ---------------------------------------------------------------------


class EventIn(Strict):
    kind: str
    data: dict[str, Any] = {}


class ClaimBody(Strict):
    worker_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    max_tasks: int = Field(default=1, ge=1, le=100)
    wait_seconds: float = Field(default=30.0, ge=0, le=120)
    name: str | None = None
    hostname: str | None = None
    capacity: int | None = Field(default=None, ge=0, le=10_000)
    version: str | None = None
    # What the worker has (store/prereqs.py): in full when it changed, else its digest.
    # A worker sending neither is given any task, whatever its agent requires.
    capabilities: Capabilities | None = None
    capabilities_digest: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class ClaimedOut(BaseModel):
    task: TaskOut
    agent: AgentOut | None
    token: Token
    lease_seconds: float
    checkpoint: Any = None


class ClaimOut(BaseModel):
    tasks: list[ClaimedOut]


class HeldTask(Strict):
    id: str
    token: Token


class WorkerHeartbeatBody(Strict):
    queue: Name
    running: int = Field(default=0, ge=0, le=100_000)
    tasks: list[HeldTask] = Field(default=[], max_length=10_000)


class WorkerHeartbeatOut(BaseModel):
    cancel: list[str]
    lost: list[str]
    lease_seconds: float


class TokenBody(Strict):
    token: Token


class TaskHeartbeatOut(BaseModel):
    cancel_requested: bool
    lease_expires_at: datetime | None


class EventsBody(Strict):
    token: Token
    events: list[EventIn] = Field(min_length=1, max_length=5000)
    phase: Literal["planning", "executing"] | None = None


class EventsOut(BaseModel):
    last_seq: int
    cancel_requested: bool


class RequestInputBody(Strict):
    token: Token
    question: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    choices: list[Annotated[str, StringConstraints(max_length=500)]] | None = Field(
        default=None, max_length=50
    )
    key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    checkpoint: Any = None
    events: list[EventIn] = Field(default=[], max_length=5000)


class CompleteBody(Strict):
    token: Token
    result: Any = None
    usage: dict[str, Any] | None = None
    events: list[EventIn] = Field(default=[], max_length=5000)


class FailBody(Strict):
    token: Token
    error: ErrorOut
    events: list[EventIn] = Field(default=[], max_length=5000)


class ReleaseBody(Strict):
    token: Token
    events: list[EventIn] = Field(default=[], max_length=5000)


class CheckpointBody(Strict):
    token: Token
    checkpoint: Any
