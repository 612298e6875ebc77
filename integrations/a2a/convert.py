"""Our tasks and events as A2A protocol objects (a2a-sdk's protobuf types).

| our status       | A2A `TaskState`              |
|------------------|------------------------------|
| pending          | TASK_STATE_SUBMITTED         |
| running          | TASK_STATE_WORKING           |
| requires_input   | TASK_STATE_INPUT_REQUIRED    |
| completed        | TASK_STATE_COMPLETED         |
| failed           | TASK_STATE_FAILED            |
| cancelled        | TASK_STATE_CANCELED          |

The A2A task id is our task id, and so is its context id (one task, one context). The
task's result is the artifact `result` (a text part with `output` when there is one, and a
data part with the whole result); files the task saved are artifacts with a URL part
pointing at `GET /api/v1/tasks/{id}/artifacts/{name}` (fetched with the same key).
"""

from __future__ import annotations

import json
from typing import Any, cast

from a2a.helpers.proto_helpers import new_data_part, new_text_part, new_url_part
from a2a.types.a2a_pb2 import (
    ROLE_AGENT,
    ROLE_USER,
    TASK_STATE_CANCELED,
    TASK_STATE_COMPLETED,
    TASK_STATE_FAILED,
    TASK_STATE_INPUT_REQUIRED,
    TASK_STATE_SUBMITTED,
    TASK_STATE_WORKING,
    Artifact,
    Message,
    Part,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict

from kernel.statuses import TaskStatus as S
from store.models import Artifact as StoredArtifact
from store.models import Task as StoredTask
from store.models import TaskEvent

__all__ = [
    "SETTLED",
    "artifact_update",
    "file_artifact",
    "result_artifact",
    "state_of",
    "status_update",
    "task_proto",
]

STATES: dict[str, TaskState] = {
    S.pending.value: TASK_STATE_SUBMITTED,
    S.running.value: TASK_STATE_WORKING,
    S.requires_input.value: TASK_STATE_INPUT_REQUIRED,
    S.completed.value: TASK_STATE_COMPLETED,
    S.failed.value: TASK_STATE_FAILED,
    S.cancelled.value: TASK_STATE_CANCELED,
}
# Where `message/send` stops waiting and a stream ends: the task is done, or waits for a person.
SETTLED = frozenset({S.requires_input.value, S.completed.value, S.failed.value, S.cancelled.value})


def state_of(status: str) -> TaskState:
    return STATES.get(status, TASK_STATE_WORKING)


def _metadata(data: dict[str, Any]) -> struct_pb2.Struct:
    return ParseDict(json.loads(json.dumps(data, default=str)), struct_pb2.Struct())


def _agent_message(task: StoredTask, text: str, **metadata: Any) -> Message:
    return Message(
        message_id=f"{task.id}:{task.last_seq}",
        context_id=task.id,
        task_id=task.id,
        role=ROLE_AGENT,
        parts=[new_text_part(text)],
        metadata=_metadata(metadata) if metadata else None,
    )


def _status_message(task: StoredTask) -> Message | None:
    """What the status says in words: the question, the error, or nothing."""
    if task.status == S.requires_input.value and task.pending_input:
        pending = task.pending_input
        return _agent_message(
            task,
            str(pending.get("question", "")),
            key=pending.get("key"),
            choices=pending.get("choices") or [],
        )
    if task.status == S.failed.value and task.error_message:
        return _agent_message(task, task.error_message, code=task.error_code)
    return None


def status(task: StoredTask) -> TaskStatus:
    out = TaskStatus(state=state_of(task.status), message=_status_message(task))
    out.timestamp.FromDatetime(task.updated_at)
    return out


def result_artifact(task: StoredTask) -> Artifact | None:
    """The task's result as the artifact `result` (None before it completes)."""
    if task.status != S.completed.value or task.result is None:
        return None
    result: Any = task.result
    parts: list[Part] = []
    if isinstance(result, dict):
        output = cast(dict[str, Any], result).get("output")
        if isinstance(output, str):
            parts.append(new_text_part(output))
    elif isinstance(result, str):
        parts.append(new_text_part(result))
    parts.append(new_data_part(json.loads(json.dumps(result, default=str)), "application/json"))
    return Artifact(artifact_id="result", name="result", parts=parts)


def file_artifact(base_url: str, task_id: str, a: StoredArtifact) -> Artifact:
    url = f"{base_url.rstrip('/')}/api/v1/tasks/{task_id}/artifacts/{a.name}"
    return Artifact(
        artifact_id=f"file:{a.name}",
        name=a.name,
        parts=[new_url_part(url, a.media_type, a.name.rsplit("/", 1)[-1])],
        metadata=_metadata({"size": a.size, "sha256": a.sha256}),
    )


def task_proto(task: StoredTask, files: list[Artifact] | None = None) -> Task:
    """The A2A view of one of our tasks."""
    artifacts = list(files or [])
    result = result_artifact(task)
    if result is not None:
        artifacts.insert(0, result)
    prompt = Message(
        message_id=f"{task.id}:prompt",
        context_id=task.id,
        task_id=task.id,
        role=ROLE_USER,
        parts=[new_text_part(task.prompt)],
    )
    meta = {"agent": task.agent, "queue": task.queue, "source": task.source, "status": task.status}
    return Task(
        id=task.id,
        context_id=task.id,
        status=status(task),
        artifacts=artifacts,
        history=[prompt],
        metadata=_metadata(meta),
    )


def status_update(task: StoredTask) -> TaskStatusUpdateEvent:
    return TaskStatusUpdateEvent(task_id=task.id, context_id=task.id, status=status(task))


def progress_update(task: StoredTask, event: TaskEvent) -> TaskStatusUpdateEvent | None:
    """A `message` the agent wrote while working, as a working status with its text."""
    text = event.data.get("text") if event.kind == "message" else None
    if not isinstance(text, str) or not text:
        return None
    out = TaskStatus(state=TASK_STATE_WORKING, message=_agent_message(task, text, seq=event.seq))
    out.timestamp.FromDatetime(event.created_at)
    return TaskStatusUpdateEvent(task_id=task.id, context_id=task.id, status=out)


def artifact_update(task_id: str, artifact: Artifact) -> TaskArtifactUpdateEvent:
    return TaskArtifactUpdateEvent(task_id=task_id, context_id=task_id, artifact=artifact, last_chunk=True)
