"""The API's resources, each written once for the sync and the async client.

A resource method only *describes* its request: it returns a `Call` (method, path, body and
how to parse the answer into the `sdk.schemas` model its route serves). `@endpoint` turns it
into the method callers see: on a `Blocking` resource (the sync client) `c.agents.get(name)`
sends the call and returns an `AgentOut`; on an `Async` one it returns a coroutine of it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from sdk.exchange import ExchangeOut, ProgressOut
from sdk.schemas import (
    AgentList,
    AgentOut,
    ArtifactOut,
    ArtifactPage,
    BoardOut,
    ClaimedOut,
    ClaimOut,
    EventOut,
    EventPage,
    EventsOut,
    ExecuteOut,
    KeyList,
    KeyOut,
    QueueList,
    QueueOut,
    StreamEnd,
    TaskHeartbeatOut,
    TaskOut,
    TaskPage,
    TeamList,
    TeamOut,
    WorkerHeartbeatOut,
    WorkerList,
    WorkerOut,
)
from sdk.secrets import TaskSecretsOut
from sdk.transport import API, clean, json_object, seg

T = TypeVar("T")
P = ParamSpec("P")
M = TypeVar("M")

# One item of `executions.stream`: an event as `GET /tasks/{id}/events` lists it, and last
# the end with the task.
StreamItem = EventOut | StreamEnd


class Blocking:
    """Marks the resources of the sync client: their methods return the answer."""


class Async:
    """Marks the resources of the async client: their methods return a coroutine of it."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, and how its decoded answer (JSON, None for 204, bytes with `raw`) becomes T."""

    method: str
    path: str
    parse: Callable[[object], T]
    params: Mapping[str, object] | None = None
    json: object = None
    content: bytes | None = None
    headers: dict[str, str] | None = None
    raw: bool = False
    timeout: float | None = None


# The client's: sends a Call and returns its T (sync) or a coroutine of it (async).
Send = Callable[[Call[Any]], object]


def _none(_: object) -> None:
    return None


def _bytes(data: object) -> bytes:
    return data if isinstance(data, bytes) else b""


# A worker's claim answers (its calls per task) validated from their bytes: no dicts built
# first, ~20 µs less of a worker's CPU per answer right after it waited idle.
def _claimed(data: object) -> list[ClaimedOut]:
    return ClaimOut.model_validate_json(_bytes(data)).tasks


def _exchanged(data: object) -> ExchangeOut:
    return ExchangeOut.model_validate_json(_bytes(data))


def _flags(data: object) -> dict[str, bool]:
    """The few answers without a model (`{"ok": true}`)."""
    return {k: bool(v) for k, v in (json_object(data) or {}).items()}


class _Resource(Generic[M]):
    def __init__(self, send: Send, source: str = "sdk") -> None:
        self.send = send
        self._source = source


class endpoint(Generic[P, T]):  # lower case: used as a decorator, like `property`
    """A resource method written once: `Blocking` callers get T, `Async` callers a coroutine."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> endpoint[P, T]: ...
    @overload
    def __get__(self, obj: _Resource[Blocking], owner: type | None = None) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, obj: _Resource[Async], owner: type | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(
        self, obj: _Resource[Any] | None, owner: type | None = None
    ) -> endpoint[P, T] | Callable[P, object]:
        if obj is None:  # looked up on the class (help(), inspect)
            return self
        build, send = self._build, obj.send

        @functools.wraps(build)
        def bound(*args: P.args, **kwargs: P.kwargs) -> object:
            return send(build(obj, *args, **kwargs))

        return bound


class Agents(_Resource[M]):
    """Agents: `GET/POST /agents`, `PUT/GET/PATCH/DELETE /agents/{id or name}`, execute."""

    @endpoint
    def list(self, q: str | None = None) -> Call[list[AgentOut]]:
        return Call("GET", f"{API}/agents", lambda d: AgentList.model_validate(d).items, params={"q": q})

    @endpoint
    def get(self, key: str) -> Call[AgentOut]:
        return Call("GET", f"{API}/agents/{seg(key)}", AgentOut.model_validate)

    @endpoint
    def create(self, data: dict[str, Any]) -> Call[AgentOut]:
        return Call("POST", f"{API}/agents", AgentOut.model_validate, json=data)

    @endpoint
    def apply(self, data: dict[str, Any]) -> Call[AgentOut]:
        """Create or replace the agent named `data["name"]`."""
        return Call("PUT", f"{API}/agents/{seg(data['name'])}", AgentOut.model_validate, json=data)

    @endpoint
    def update(self, key: str, changes: dict[str, Any]) -> Call[AgentOut]:
        return Call("PATCH", f"{API}/agents/{seg(key)}", AgentOut.model_validate, json=changes)

    @endpoint
    def delete(self, key: str) -> Call[None]:
        return Call("DELETE", f"{API}/agents/{seg(key)}", _none)

    @endpoint
    def execute(self, agent_id: str, body: dict[str, Any]) -> Call[ExecuteOut]:
        """Start a task (Kubiya style): body `{worker_queue_id?, prompt, parameters?}`;
        `source` defaults to the client's."""
        body = {"source": self._source, **body}
        return Call("POST", f"{API}/agents/{seg(agent_id)}/execute", ExecuteOut.model_validate, json=body)


class Teams(_Resource[M]):
    """Teams: a coordinator agent and members."""

    @endpoint
    def list(self) -> Call[list[TeamOut]]:
        return Call("GET", f"{API}/teams", lambda d: TeamList.model_validate(d).items)

    @endpoint
    def get(self, key: str) -> Call[TeamOut]:
        return Call("GET", f"{API}/teams/{seg(key)}", TeamOut.model_validate)

    @endpoint
    def create(self, data: dict[str, Any]) -> Call[TeamOut]:
        return Call("POST", f"{API}/teams", TeamOut.model_validate, json=data)

    @endpoint
    def execute(self, team: str, body: dict[str, Any]) -> Call[ExecuteOut]:
        """Start a team task; same body and answer as `agents.execute`."""
        body = {"source": self._source, **body}
        return Call("POST", f"{API}/teams/{seg(team)}/execute", ExecuteOut.model_validate, json=body)


class Queues(_Resource[M]):
    """Worker queues, with their live worker counts."""

    @endpoint
    def list(self) -> Call[list[QueueOut]]:
        return Call("GET", f"{API}/worker-queues", lambda d: QueueList.model_validate(d).items)

    @endpoint
    def get(self, key: str) -> Call[QueueOut]:
        return Call("GET", f"{API}/worker-queues/{seg(key)}", QueueOut.model_validate)

    @endpoint
    def create(self, name: str, description: str = "", environment: str = "default") -> Call[QueueOut]:
        body = {"name": name, "description": description, "environment": environment}
        return Call("POST", f"{API}/worker-queues", QueueOut.model_validate, json=body)

    @endpoint
    def delete(self, key: str) -> Call[None]:
        """Delete a queue (by id or name); 409 `queue_in_use` while tasks on it are unfinished."""
        return Call("DELETE", f"{API}/worker-queues/{seg(key)}", _none)


class Workers(_Resource[M]):
    """Live workers."""

    @endpoint
    def list(self, queue: str | None = None) -> Call[list[WorkerOut]]:
        return Call(
            "GET", f"{API}/workers", lambda d: WorkerList.model_validate(d).items, params={"queue": queue}
        )


class Keys(_Resource[M]):
    """API keys (admin)."""

    @endpoint
    def create(self, name: str, scopes: list[str], queues: list[str] | None = None) -> Call[KeyOut]:
        """A new key; the answer's `key` is shown only this once. `queues` binds a worker key."""
        body: dict[str, object] = {"name": name, "scopes": scopes}
        if queues:
            body["queues"] = queues
        return Call("POST", f"{API}/keys", KeyOut.model_validate, json=body)

    @endpoint
    def list(self) -> Call[list[KeyOut]]:
        return Call("GET", f"{API}/keys", lambda d: KeyList.model_validate(d).items)

    @endpoint
    def revoke(self, id: str) -> Call[KeyOut]:
        return Call("DELETE", f"{API}/keys/{seg(id)}", KeyOut.model_validate)


class Board(_Resource[M]):
    """The Kanban board."""

    @endpoint
    def get(self, **filters: str | int | None) -> Call[BoardOut]:
        return Call("GET", f"{API}/board", BoardOut.model_validate, params=filters)


def lease_header(token: str | None) -> dict[str, str] | None:
    return {"X-Lease-Token": token} if token else None


class Executions(_Resource[M]):
    """Tasks ("executions"): create, list, follow, act on."""

    def __init__(
        self,
        send: Send,
        stream: Callable[[str, int], Iterator[StreamItem] | AsyncGenerator[StreamItem]],
        source: str,
        requested_by: str | None = None,
    ) -> None:
        super().__init__(send, source)
        self._stream = stream
        self._requested_by = requested_by

    @endpoint
    def create(
        self,
        *,
        agent: str | None = None,
        team: str | None = None,
        queue: str | None = None,
        prompt: str,
        parameters: dict[str, Any] | None = None,
        requested_by: str | None = None,
        parent_id: str | None = None,
        lease_token: str | None = None,
        plan: dict[str, Any] | None = None,
    ) -> Call[TaskOut]:
        """Create a task for an agent or a team; `source` (and by default `requested_by`) are the client's.

        A worker delegating (`parent_id`) gives its lease token on the parent as `lease_token`."""
        body = {
            "agent": agent,
            "team": team,
            "queue": queue,
            "prompt": prompt,
            "parameters": parameters,
            "source": self._source,
            "requested_by": requested_by or self._requested_by,
            "parent_id": parent_id,
            "plan": plan,  # the meta agent's plan: {"text": ...}
        }
        return Call(
            "POST",
            f"{API}/tasks",
            TaskOut.model_validate,
            json=clean(body),
            headers=lease_header(lease_token),
        )

    @endpoint
    def list(
        self,
        status: str | list[str] | None = None,
        agent: str | None = None,
        team: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        source: str | None = None,
        q: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        failure: str | None = None,
    ) -> Call[TaskPage]:
        """One page, newest first: `items` and `next_cursor`. `failure`: a failure class
        (kernel/failures.py), i.e. failed tasks whose error code is of that class."""
        params = {
            "status": status,
            "agent": agent,
            "team": team,
            "queue": queue,
            "type": type,
            "source": source,
            "q": q,
            "limit": limit,
            "cursor": cursor,
            "failure": failure,
        }
        return Call("GET", f"{API}/tasks", TaskPage.model_validate, params=params)

    @endpoint
    def get(self, id: str) -> Call[TaskOut]:
        return Call("GET", f"{API}/tasks/{seg(id)}", TaskOut.model_validate)

    @endpoint
    def events(self, id: str, after: int = 0, limit: int | None = None) -> Call[EventPage]:
        """A page of events after seq `after`: `items`, `last_seq`, `status`."""
        params = {"after": after, "limit": limit}
        return Call("GET", f"{API}/tasks/{seg(id)}/events", EventPage.model_validate, params=params)

    @endpoint
    def cancel(self, id: str) -> Call[TaskOut]:
        return Call("POST", f"{API}/tasks/{seg(id)}/cancel", TaskOut.model_validate)

    @endpoint
    def retry(self, id: str) -> Call[TaskOut]:
        """A new task with the same work, linked by `retry_of`; `source` is the client's."""
        body = {"source": self._source}
        return Call("POST", f"{API}/tasks/{seg(id)}/retry", TaskOut.model_validate, json=body)

    @endpoint
    def respond(
        self, id: str, answer: str, lease_token: str | None = None, key: str | None = None
    ) -> Call[TaskOut]:
        """Answer the task's pending question; it goes back to pending. With `key` (its
        `pending_input.key`) an answer meant for an earlier question is refused (409). A
        worker passing an answer on to its delegated task gives its lease token on the parent."""
        return Call(
            "POST",
            f"{API}/tasks/{seg(id)}/input",
            TaskOut.model_validate,
            json={"answer": answer} if key is None else {"answer": answer, "key": key},
            headers=lease_header(lease_token),
        )

    @endpoint
    def artifacts(self, id: str) -> Call[list[ArtifactOut]]:
        return Call("GET", f"{API}/tasks/{seg(id)}/artifacts", lambda d: ArtifactPage.model_validate(d).items)

    @endpoint
    def artifact(self, id: str, name: str) -> Call[bytes]:
        """The artifact's bytes."""
        return Call("GET", f"{API}/tasks/{seg(id)}/artifacts/{seg(name)}", _bytes, raw=True)

    @overload
    def stream(self: Executions[Blocking], id: str, after: int = 0) -> Iterator[StreamItem]: ...
    @overload
    def stream(self: Executions[Async], id: str, after: int = 0) -> AsyncGenerator[StreamItem]: ...
    def stream(self, id: str, after: int = 0) -> Iterator[StreamItem] | AsyncGenerator[StreamItem]:
        """Live events after seq `after`, then a `StreamEnd` with the task; resumes on drops."""
        return self._stream(id, after)


class WorkerApi(_Resource[M]):
    """The worker protocol (async client only). Every task call carries the lease `token`
    the claim gave (a string, shown nowhere else)."""

    def __init__(self, send: Send, margin: float) -> None:
        super().__init__(send)
        self._margin = margin

    @endpoint
    def claim(
        self,
        queue: str,
        worker_id: str,
        max_tasks: int = 1,
        wait_seconds: float = 30.0,
        info: dict[str, Any] | None = None,
    ) -> Call[list[ClaimedOut]]:
        """Long-poll: the claimed tasks (task, agent, token, lease_seconds, checkpoint), [] on timeout."""
        body = {**clean(info), "worker_id": worker_id, "max_tasks": max_tasks, "wait_seconds": wait_seconds}
        return Call(
            "POST",
            f"{API}/worker-queues/{seg(queue)}/claim",
            _claimed,
            json=body,
            raw=True,
            timeout=wait_seconds + self._margin,
        )

    @endpoint
    def post_progress(self, queue: str, items: list[dict[str, Any]]) -> Call[ProgressOut]:
        """Several running tasks' events in one call: `items` of `{id, token, events, phase?}`;
        each answered alone (`last_seq`, `cancel_requested`, or a `problem`)."""
        return Call(
            "POST",
            f"{API}/worker-queues/{seg(queue)}/events",
            ProgressOut.model_validate,
            json={"items": items},
        )

    @endpoint
    def exchange(
        self,
        queue: str,
        worker_id: str,
        reports: list[dict[str, Any]],
        max_tasks: int = 1,
        wait_seconds: float = 30.0,
        info: dict[str, Any] | None = None,
    ) -> Call[ExchangeOut]:
        """Report finished tasks (`{id, token, result, usage?, events?}` or `{id, token, error:
        {code, message}, events?}`) and claim up to `max_tasks`, in one call. With reports it
        answers at once; without, it long-polls like `claim`."""
        body = {
            **clean(info),
            "worker_id": worker_id,
            "reports": reports,
            "max_tasks": max_tasks,
            "wait_seconds": wait_seconds,
        }
        return Call(
            "POST",
            f"{API}/worker-queues/{seg(queue)}/exchange",
            _exchanged,
            json=body,
            raw=True,
            timeout=(0 if reports else wait_seconds) + self._margin,
        )

    @endpoint
    def heartbeat(
        self, worker_id: str, queue: str, running: int, tasks: list[dict[str, Any]]
    ) -> Call[WorkerHeartbeatOut]:
        """Extend every held lease: which tasks to cancel, which leases are lost."""
        body = {"queue": queue, "running": running, "tasks": tasks}
        return Call(
            "POST", f"{API}/workers/{seg(worker_id)}/heartbeat", WorkerHeartbeatOut.model_validate, json=body
        )

    @endpoint
    def bye(self, worker_id: str) -> Call[None]:
        return Call("DELETE", f"{API}/workers/{seg(worker_id)}", _none)

    def _task(self, task_id: str, action: str, body: dict[str, Any], parse: Callable[[object], T]) -> Call[T]:
        if not body.get("events"):
            body.pop("events", None)  # the server refuses an empty batch
        return Call("POST", f"{API}/tasks/{seg(task_id)}/{action}", parse, json=body)

    @endpoint
    def task_heartbeat(self, task_id: str, token: str) -> Call[TaskHeartbeatOut]:
        return self._task(task_id, "heartbeat", {"token": token}, TaskHeartbeatOut.model_validate)

    @endpoint
    def post_events(
        self, task_id: str, token: str, events: list[dict[str, Any]], phase: str | None = None
    ) -> Call[EventsOut]:
        """Append `[{kind, data}]` (and move the phase): `last_seq`, `cancel_requested`."""
        body: dict[str, object] = {"token": token, "events": events}
        if phase:
            body["phase"] = phase
        return Call("POST", f"{API}/tasks/{seg(task_id)}/events", EventsOut.model_validate, json=body)

    @endpoint
    def request_input(
        self,
        task_id: str,
        token: str,
        question: str,
        choices: list[str] | None = None,
        key: str | None = None,
        checkpoint: Any = None,
        events: list[dict[str, Any]] | None = None,
    ) -> Call[TaskOut]:
        body = clean({"question": question, "choices": choices, "key": key, "checkpoint": checkpoint})
        return self._task(
            task_id, "request-input", {"token": token, **body, "events": events}, TaskOut.model_validate
        )

    @endpoint
    def complete(
        self,
        task_id: str,
        token: str,
        result: Any,
        usage: dict[str, Any] | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> Call[TaskOut]:
        body = {"token": token, "result": result, "events": events}
        if usage is not None:
            body["usage"] = usage
        return self._task(task_id, "complete", body, TaskOut.model_validate)

    @endpoint
    def fail(
        self, task_id: str, token: str, code: str, message: str, events: list[dict[str, Any]] | None = None
    ) -> Call[TaskOut]:
        body = {"token": token, "error": {"code": code, "message": message}, "events": events}
        return self._task(task_id, "fail", body, TaskOut.model_validate)

    @endpoint
    def release(self, task_id: str, token: str, events: list[dict[str, Any]] | None = None) -> Call[TaskOut]:
        """Hand the task back to the queue (pending)."""
        return self._task(task_id, "release", {"token": token, "events": events}, TaskOut.model_validate)

    @endpoint
    def checkpoint(self, task_id: str, token: str, checkpoint: Any) -> Call[dict[str, bool]]:
        return self._task(task_id, "checkpoint", {"token": token, "checkpoint": checkpoint}, _flags)

    @endpoint
    def secrets(self, task_id: str, token: str) -> Call[TaskSecretsOut]:  # the agent's (worker.secrets)
        return self._task(task_id, "secrets", {"token": token}, TaskSecretsOut.model_validate)

    @endpoint
    def put_artifact(
        self, task_id: str, token: str, name: str, content: bytes, media_type: str
    ) -> Call[ArtifactOut]:
        path = f"{API}/tasks/{seg(task_id)}/artifacts/{seg(name)}"
        headers = {"Content-Type": media_type, "X-Lease-Token": token}
        return Call("PUT", path, ArtifactOut.model_validate, content=content, headers=headers)
