"""SQLModel tables. One class per table; API schemas live in `sdk/schemas.py`.

Timestamps are timezone-aware UTC everywhere (`UTCDateTime` stores naive UTC on SQLite,
which has no time zones, and hands back aware values on both backends).
JSON columns are replaced, never mutated in place (SQLAlchemy does not see in-place edits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from kernel.statuses import TERMINAL, TaskStatus  # re-exported: the tables' statuses
from store.ids import new_id

__all__ = [
    "TERMINAL",
    "Agent",
    "ApiKey",
    "Artifact",
    "ArtifactChunk",
    "Conversation",
    "Table",
    "Task",
    "TaskEvent",
    "TaskStatus",
    "Team",
    "Worker",
    "WorkerQueue",
    "build",
    "from_row",
    "utcnow",
    "values_of",
]


if TYPE_CHECKING:

    class Table(SQLModel):
        """What a table model has, as type checkers should see it: SQLModel declares
        `__tablename__` as its own `declared_attr` default, so assigning a name is an error
        to pyright (fastapi/sqlmodel#98), and leaves out `__table__`, which SQLAlchemy sets."""

        __tablename__: ClassVar[str]  # pyright: ignore[reportIncompatibleVariableOverride]
        __table__: ClassVar[sa.Table]

else:
    # At run time the tables derive from SQLModel itself, exactly as before.
    Table = SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


_M = TypeVar("_M", bound=SQLModel)


def build(cls: type[_M], **values: Any) -> _M:
    """`cls(**values)` with the fields' defaults, without SQLModel's slow constructor (see
    `from_row`); for rows the caller inserts itself. Values are not validated."""
    plain, made = _defaults(cls)
    row = {**plain, **values}
    for name, factory in made:
        if name not in values:
            row[name] = factory()
    return from_row(cls, row)


_DEFAULTS: dict[type[SQLModel], tuple[dict[str, Any], list[tuple[str, Callable[[], Any]]]]] = {}


def _defaults(cls: type[SQLModel]) -> tuple[dict[str, Any], list[tuple[str, Callable[[], Any]]]]:
    """`cls`'s plain defaults and its default factories, read once (walking the model's
    fields on every `build` cost ~15 µs of a task's creation)."""
    found = _DEFAULTS.get(cls)
    if found is None:
        fields = cls.model_fields.items()
        plain = {n: f.default for n, f in fields if f.default_factory is None}
        made = [(n, cast("Callable[[], Any]", f.default_factory)) for n, f in fields if f.default_factory]
        found = _DEFAULTS[cls] = (plain, made)
    return found


def from_row(cls: type[_M], row: Mapping[Any, Any]) -> _M:
    """A table model holding a row the caller read itself (an UPDATE ... RETURNING), not
    attached to any session.

    `cls(**row)` runs SQLModel's constructor, which sets every field through SQLAlchemy's
    instrumentation: ~100 µs for a task, paid on every claim and completion. This builds the
    same object (SQLAlchemy state, pydantic's bookkeeping, the values) in ~10 µs. The values
    are taken as they are: they come from the database, already valid."""
    manager: Any = getattr(cls, "_sa_class_manager")  # noqa: B009 (set by SQLAlchemy's mapper)
    obj: _M = manager.new_instance()
    values: dict[str, Any] = vars(obj)
    values.update(row)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values) - {"_sa_instance_state"})
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def values_of(obj: SQLModel, names: Iterable[str]) -> dict[str, Any]:
    """`{name: getattr(obj, name)}`, read from the instance's dict when every name is there
    (objects from `build`/`from_row` and loaded rows): SQLAlchemy's attribute descriptor
    costs ~0.4 µs a read, ~15 µs for a task's columns on every create, claim and answer.
    An attribute that is not loaded (expired, deferred) goes through the descriptor."""
    held = vars(obj)
    try:
        return {k: held[k] for k in names}
    except KeyError:
        return {k: getattr(obj, k) for k in names}


class UTCDateTime(TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(default: Any = None) -> Any:
    if default is None:
        return Field(default=None, sa_type=sa.JSON, nullable=True)
    return Field(default_factory=lambda: type(default)(default), sa_type=sa.JSON, nullable=False)


class Agent(Table, table=True):
    __tablename__ = "agents"
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    description: str = ""
    runtime: str = Field(max_length=32)  # "llm" | "command" | "noop"
    model: str | None = None
    instructions: str | None = None
    command: list[str] | None = _json()
    parameters: dict[str, Any] = _json({})
    tools: list[str] = _json([])
    mcp_servers: list[dict[str, Any]] = _json([])
    policy: dict[str, Any] = _json({})
    provider: dict[str, Any] = _json({})  # how an llm agent calls its model (no keys: names)
    secrets: list[str] = _json([])  # names of store.secret_models.Secret its processes get
    # What a worker must have to run it (store/prereqs.py): bins, env, secrets, mcp, environment.
    requires: dict[str, Any] = _json({})
    default_queue: str | None = None
    timeout_seconds: int = 600
    risky: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Team(Table, table=True):
    __tablename__ = "teams"
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    description: str = ""
    coordinator: str
    members: list[str] = _json([])
    default_queue: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WorkerQueue(Table, table=True):
    __tablename__ = "worker_queues"
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    description: str = ""
    environment: str = "default"
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Worker(Table, table=True):
    __tablename__ = "workers"
    id: str = Field(primary_key=True, max_length=64)  # chosen by the worker process
    queue: str = Field(index=True)
    name: str = ""
    hostname: str = ""
    capacity: int = 1
    version: str = ""
    running: int = 0
    # What it has (worker/capabilities.py), with their digest; None: an older worker that
    # reports nothing, treated as able to run anything (store/prereqs.py).
    capabilities: dict[str, Any] | None = _json()
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_heartbeat_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class Task(Table, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        sa.Index("ix_tasks_claim", "queue", "status", "id"),
        sa.Index("ix_tasks_status_id", "status", "id"),
        # Only the rows their questions ask about (migration 0015): the reaper's running tasks
        # by lease end (store/reaper.py), a team's tasks, a task's children.
        *(
            sa.Index(name, column, postgresql_where=sa.text(where), sqlite_where=sa.text(where))
            for name, column, where in (
                ("ix_tasks_lease", "lease_expires_at", "status = 'running'"),
                ("ix_tasks_team", "team", "team IS NOT NULL"),
                ("ix_tasks_parent_id", "parent_id", "parent_id IS NOT NULL"),
            )
        ),
        # GET /tasks?failure=CLASS (store/failure_filter.py): failed tasks only, by code.
        # Tasks whose agent requires something (store/prereqs.py), only those.
        sa.Index(
            "ix_tasks_needs",
            "queue",
            "status",
            "needs",
            postgresql_where=sa.text("needs IS NOT NULL"),
            sqlite_where=sa.text("needs IS NOT NULL"),
        ),
        sa.Index(
            "ix_tasks_error_code",
            "error_code",
            "id",
            postgresql_where=sa.text("error_code IS NOT NULL"),
            sqlite_where=sa.text("error_code IS NOT NULL"),
        ),
    )
    id: str = Field(default_factory=new_id, primary_key=True)
    agent: str | None = Field(default=None, index=True)
    team: str | None = None
    queue: str
    prompt: str = ""
    parameters: dict[str, Any] = _json({})
    source: str = "api"
    requested_by: str | None = None
    parent_id: str | None = None
    retry_of: str | None = None
    # The schedule that started it (store/schedules.py); a partial index (migration 0008)
    # covers only such tasks, so creating any other task pays nothing for it.
    schedule_id: str | None = Field(default=None, max_length=36)
    status: str = TaskStatus.pending.value
    phase: str | None = None
    attempt: int = 0  # +1 on every claim
    # SHA-256 of the current claim's lease token (store.leases); None when no worker holds it.
    lease_token_hash: str | None = Field(default=None, max_length=64)
    lost_leases: int = 0
    max_attempts: int = 3
    worker_id: str | None = None
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_requested: bool = False
    result: Any = _json()
    error_code: str | None = None
    error_message: str | None = None
    pending_input: dict[str, Any] | None = _json()
    inputs: dict[str, Any] = _json({})
    checkpoint: Any = _json()
    usage: dict[str, Any] = _json({})
    # What the meta agent planned when it created the task ({"text": ...}), or None.
    plan: dict[str, Any] | None = _json()
    last_seq: int = 0
    # The agent's prerequisites when the task was made (store/prereqs.py: a canonical JSON
    # list like '["bin:kubectl"]'), None when it needs nothing; and, while it waits, why.
    needs: str | None = None
    waiting_for: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TaskEvent(Table, table=True):
    __tablename__ = "task_events"
    task_id: str = Field(primary_key=True, foreign_key="tasks.id", ondelete="CASCADE")
    seq: int = Field(primary_key=True)
    kind: str = Field(max_length=32)
    data: dict[str, Any] = _json({})
    attempt: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Artifact(Table, table=True):
    __tablename__ = "artifacts"
    __table_args__ = (sa.UniqueConstraint("task_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    task_id: str = Field(foreign_key="tasks.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=255)
    media_type: str = "application/octet-stream"
    size: int = 0
    sha256: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ArtifactChunk(Table, table=True):
    """A piece of an artifact's bytes (store/artifacts.py), in order of `idx`.

    No foreign key to `artifacts`: the chunks are written as the upload arrives, each in its
    own short transaction, and the artifact row that names them comes last, so a reader never
    sees half a file.
    """

    __tablename__ = "artifact_chunks"
    artifact_id: str = Field(primary_key=True)
    idx: int = Field(primary_key=True)
    data: bytes = Field(sa_type=sa.LargeBinary)


class ApiKey(Table, table=True):
    __tablename__ = "api_keys"
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = ""
    prefix: str = Field(unique=True, max_length=32)
    hash: str
    scopes: list[str] = _json([])
    # A worker key bound to queues claims and acts on tasks of those queues only ([]: any).
    queues: list[str] = _json([])
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Conversation(Table, table=True):
    """One chat with the meta agent (a CLI session, a Slack thread, a web chat).

    `messages` is the model's conversation (OpenAI format, system prompt excluded), replaced
    as a whole after every turn, so a restarted control plane carries on where it was.
    """

    __tablename__ = "conversations"
    id: str = Field(default_factory=new_id, primary_key=True)
    source: str = Field(default="api", max_length=32)
    requested_by: str | None = None
    external_id: str | None = Field(default=None, index=True, max_length=255)  # e.g. a Slack thread
    messages: list[dict[str, Any]] = _json([])
    task_ids: list[str] = _json([])
    # A plan waiting for the person's approval (see meta_agent.conversation), or None.
    pending: dict[str, Any] | None = _json()
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
