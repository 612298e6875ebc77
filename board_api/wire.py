"""Rows to wire models: what the API serves is built from the store's rows here, so the
SDK's models (`sdk.schemas`) stay plain data that a client can use without the store."""

from __future__ import annotations

from sdk.schemas import AgentOut, ArtifactOut, ErrorOut, EventOut, PendingInput, TaskOut, WorkerOut
from store.models import Agent, Artifact, Task, TaskEvent, Worker

__all__ = ["agent_out", "artifact_out", "event_out", "task_out", "worker_out"]

_TASK_FIELDS = [f for f in TaskOut.model_fields if f not in ("error", "pending_input", "duration_seconds")]


def task_out(t: Task) -> TaskOut:
    end = t.finished_at
    duration = (end - t.started_at).total_seconds() if end and t.started_at else None
    return TaskOut(
        **{k: getattr(t, k) for k in _TASK_FIELDS},
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
