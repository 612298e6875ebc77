"""The A2A request handler: JSON-RPC methods onto our task service.

Stateless: every answer is read from the store (the task row and its event log), so any
replica answers any call, and a stream follows the same event log as the board's SSE (woken
by the hub; other replicas' events arrive through LISTEN/NOTIFY).

- `SendMessage` / `message/send`: a message without `taskId` creates a task (`source =
  "a2a"`) for the skill named in the message's or request's metadata (`skill`, or `agent`);
  with one agent only, that one. A message with the `taskId` of an `input-required` task
  answers its question and resumes it. It then waits until the task settles (done, or asks
  again) for at most `SEND_WAIT` seconds, unless `configuration.returnImmediately`.
- `SendStreamingMessage` / `message/stream`: the same, then the task, then its progress as
  status updates (the agent's messages as `working` with text), its files and result as
  artifact updates, ending with the `completed`/`failed`/`canceled`/`input-required` status.
- `GetTask` / `tasks/get`, `CancelTask` / `tasks/cancel`, `SubscribeToTask` (follow a task).

Scopes as in the REST API: reading needs `viewer`, sending (creating, answering) and
cancelling `operator`; worker keys act on tasks only through the worker protocol.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any, NoReturn, cast

from a2a.helpers.proto_helpers import get_data_parts, get_text_parts
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
)
from a2a.utils.errors import (
    ExtendedAgentCardNotConfiguredError,
    InvalidParamsError,
    InvalidRequestError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict

from integrations.a2a import convert
from kernel import errors
from kernel.settings import Settings
from store import audit, catalog, events, tasks
from store.auth import Principal
from store.db import Database
from store.models import Task as StoredTask

__all__ = ["BASE_URL", "PRINCIPAL", "SEND_WAIT", "MetaAgentHandler"]

PRINCIPAL = "principal"  # where the route leaves the caller in the call context's state
BASE_URL = "base_url"
SEND_WAIT = 60.0  # seconds `message/send` waits for the task to settle before answering
FOLLOW_WAKE = 15.0  # a stream re-reads the log at least this often (a missed wake-up)


def _raise(exc: errors.MetaAgentError, *, cancelling: bool = False) -> NoReturn:
    """Our error as the A2A error a client understands (the message says what was wrong)."""
    detail = f"{exc.detail} ({exc.code})"
    if isinstance(exc, errors.NotFound) and exc.code == "task_not_found":
        raise TaskNotFoundError(detail) from None
    if cancelling and isinstance(exc, errors.InvalidTransition):
        raise TaskNotCancelableError(detail) from None
    if isinstance(exc, errors.Unauthorized | errors.Forbidden):
        raise InvalidRequestError(detail, data={"code": exc.code}) from None
    raise InvalidParamsError(detail, data={"code": exc.code}) from None


def _caller(context: ServerCallContext, scope: str) -> Principal:
    p = context.state.get(PRINCIPAL)
    if not isinstance(p, Principal):  # not reached: the route authenticates every call
        raise InvalidRequestError("unauthenticated", data={"code": "unauthorized"})
    if not p.can(scope):
        raise InvalidRequestError(f"this key lacks the {scope!r} scope", data={"code": "insufficient_scope"})
    return p


def _metadata(params: SendMessageRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for source in (params.metadata, params.message.metadata):
        out.update(MessageToDict(source))
    return out


class MetaAgentHandler(RequestHandler):
    """JSON-RPC calls onto `store.tasks`, for the database the plugin was started with."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db: Database | None = None

    def _database(self) -> Database:
        if self.db is None:
            raise InvalidRequestError("the server is starting; retry", data={"code": "unavailable"})
        return self.db

    # --- sending ------------------------------------------------------------------------

    async def _start(self, params: SendMessageRequest, p: Principal) -> StoredTask:
        """Create the task the message asks for, or answer the question it replies to."""
        msg = params.message
        text = "\n".join(get_text_parts(msg.parts)).strip()
        db = self._database()
        try:
            if msg.task_id:
                if not text:
                    raise InvalidParamsError("the answer needs a text part")
                async with db.tx() as tx:
                    task = await tasks.respond(
                        tx, msg.task_id, text, by=p.name, max_chars=self.settings.max_prompt_chars
                    )
                    await audit.record(tx, audit.actor_of(p, "a2a"), "task.answer", "task", task.id)
                    return task
            agent = await self._skill(params)
            parameters: dict[str, Any] = {}
            for data in get_data_parts(msg.parts):
                if isinstance(data, dict):  # a data part that is an object carries parameters
                    parameters.update(cast(dict[str, Any], data))
            new = tasks.NewTask(
                prompt=text,
                agent=agent,
                parameters=parameters,
                source="a2a",
                requested_by=p.name if p.key_id else None,
            )
            async with db.tx() as tx:
                task = await tasks.create_task(
                    tx,
                    new,
                    max_prompt_chars=self.settings.max_prompt_chars,
                    max_attempts=self.settings.max_attempts,
                )
                details = {"agent": agent, "requested_by": new.requested_by}
                await audit.record(tx, audit.actor_of(p, "a2a"), "task.create", "task", task.id, details)
                return task
        except errors.MetaAgentError as exc:
            _raise(exc)

    async def _skill(self, params: SendMessageRequest) -> str:
        meta = _metadata(params)
        chosen = meta.get("skill") or meta.get("agent")
        if isinstance(chosen, str) and chosen:
            return chosen
        async with self._database().read() as s:
            names = [a.name for a in await catalog.list_agents(s)]
        if len(names) == 1:
            return names[0]
        raise InvalidParamsError(
            "name the skill (one of our agents) in the message's metadata as `skill`: "
            + (", ".join(names) or "there are no agents yet"),
            data={"code": "skill_required", "skills": names},
        )

    async def _read(self, task_id: str) -> StoredTask:
        try:
            async with self._database().read() as s:
                return await tasks.get_task(s, task_id)
        except errors.MetaAgentError as exc:
            _raise(exc)

    async def _proto(self, task: StoredTask, context: ServerCallContext) -> Task:
        async with self._database().read() as s:
            files = await tasks.list_artifacts(s, task.id)
        base = str(context.state.get(BASE_URL, ""))
        return convert.task_proto(task, [convert.file_artifact(base, task.id, a) for a in files])

    async def _settled(self, task: StoredTask, timeout: float) -> StoredTask:
        """The task once it is done or waits for input, or as it is after `timeout` seconds."""
        hub, topic = self._database().hub, f"task:{task.id}"
        deadline = time.monotonic() + timeout
        while task.status not in convert.SETTLED:
            version = hub.version(topic)
            task = await self._read(task.id)
            left = deadline - time.monotonic()
            if task.status in convert.SETTLED or left <= 0:
                break
            await hub.wait(topic, version, min(left, FOLLOW_WAKE))
        return task

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        p = _caller(context, "operator")
        task = await self._start(params, p)
        if not params.configuration.return_immediately:
            task = await self._settled(task, SEND_WAIT)
        return await self._proto(task, context)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        p = _caller(context, "operator")
        task = await self._start(params, p)
        async for event in self._follow(task, context):
            yield event

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        _caller(context, "viewer")
        task = await self._read(params.id)
        async for event in self._follow(task, context):
            yield event

    async def _follow(self, task: StoredTask, context: ServerCallContext) -> AsyncGenerator[Event]:
        """The task as it is, then its events from there on, until it settles."""
        db = self._database()
        yield await self._proto(task, context)
        if task.status in convert.SETTLED:
            return
        after, topic, base = task.last_seq, f"task:{task.id}", str(context.state.get(BASE_URL, ""))
        while True:
            version = db.hub.version(topic)
            async with db.read() as s:
                batch = await events.list_after(s, task.id, after)
            for event in batch:
                after = event.seq
                if event.kind == "message":
                    update = convert.progress_update(task, event)
                    if update is not None:
                        yield update
                elif event.kind == "artifact":
                    async with db.read() as s:
                        stored = await tasks.get_artifact(s, task.id, str(event.data.get("name")))
                    yield convert.artifact_update(task.id, convert.file_artifact(base, task.id, stored))
                elif event.kind == "status":
                    task = await self._read(task.id)
                    if task.status in convert.SETTLED:
                        result = convert.result_artifact(task)
                        if result is not None:
                            yield convert.artifact_update(task.id, result)
                        yield convert.status_update(task)
                        return
                    yield convert.status_update(task)
            if not batch:
                await db.hub.wait(topic, version, FOLLOW_WAKE)

    # --- reading and cancelling ---------------------------------------------------------

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        _caller(context, "viewer")
        return await self._proto(await self._read(params.id), context)

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        p = _caller(context, "operator")
        try:
            async with self._database().tx() as tx:
                task = await tasks.cancel(tx, params.id, by=p.name)
                await audit.record(tx, audit.actor_of(p, "a2a"), "task.cancel", "task", task.id)
        except errors.MetaAgentError as exc:
            _raise(exc, cancelling=True)
        return await self._proto(task, context)

    # --- not offered ----------------------------------------------------------------------

    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        raise UnsupportedOperationError("list tasks with GET /api/v1/tasks?source=a2a")

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError()

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError()

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError()

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError()

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError()
