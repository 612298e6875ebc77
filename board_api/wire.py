"""Rows to wire models: what the API serves is built from the store's rows here, so the
SDK's models (`sdk.schemas`) stay plain data that a client can use without the store."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel

from sdk.schemas import AgentOut, ArtifactOut, ErrorOut, EventOut, PendingInput, TaskOut, WorkerOut
from store.models import Agent, Artifact, Task, TaskEvent, Worker, values_of

__all__ = ["agent_out", "artifact_out", "event_out", "json_response", "task_out", "worker_out"]


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as the answer, encoded by pydantic's own serializer. The hot routes return
    this: a route returning its model lets FastAPI validate it again against the declared
    `response_model`, turn it into plain dicts and encode those with `json`, which costs
    several times the encoding itself. The route's `response_model` still documents it."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


_TASK_FIELDS = [f for f in TaskOut.model_fields if f not in ("error", "pending_input", "duration_seconds")]


def task_out(t: Task) -> TaskOut:
    end = t.finished_at
    duration = (end - t.started_at).total_seconds() if end and t.started_at else None
    return TaskOut(
        **values_of(t, _TASK_FIELDS),
        error=ErrorOut(code=t.error_code, message=t.error_message or "") if t.error_code else None,
        pending_input=PendingInput(**t.pending_input) if t.pending_input else None,
        duration_seconds=duration,
    )


def event_out(e: TaskEvent) -> EventOut:
    return EventOut.model_validate(e, from_attributes=True)


def artifact_out(a: Artifact) -> ArtifactOut:
    return ArtifactOut.model_validate(a, from_attributes=True)


def agent_out(a: Agent) -> AgentOut:
    return AgentOut.model_validate(a, from_attributes=True)


def worker_out(w: Worker) -> WorkerOut:
    return WorkerOut.model_validate(w, from_attributes=True)
