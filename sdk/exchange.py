"""The worker's `exchange` call (POST /worker-queues/{queue}/exchange): the reports of
finished tasks and the next claim, in one request. See docs/protocol.md."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator

from sdk.schemas import ClaimBody, ClaimedOut, ErrorOut, EventIn, EventsBody, Strict, Token

__all__ = [
    "ExchangeBody",
    "ExchangeOut",
    "Problem",
    "ProgressBody",
    "ProgressIn",
    "ProgressOut",
    "ProgressResult",
    "ReportIn",
    "ReportOut",
]


class ReportIn(Strict):
    """One finished task in an exchange: a `result` (completed), or an `error` (failed; after
    a cancel request, the acknowledgement that ends it `cancelled`)."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    token: Token
    result: Any = None
    usage: dict[str, Any] | None = None
    error: ErrorOut | None = None
    events: list[EventIn] = Field(default=[], max_length=5000)


class ExchangeBody(ClaimBody):
    """A worker's one call per round: report what finished, claim what it has room for."""

    reports: list[ReportIn] = Field(default=[], max_length=100)
    max_tasks: int = Field(default=1, ge=0, le=100)


class Problem(BaseModel):
    status: int
    code: str
    detail: str


class ReportOut(BaseModel):
    id: str
    status: str | None = None  # the state the report left the task in; None when refused
    problem: Problem | None = None  # why it was refused (409 stale_lease: no longer yours)


class ExchangeOut(BaseModel):
    reports: list[ReportOut]
    tasks: list[ClaimedOut]


class ProgressIn(EventsBody):
    """One running task's batch of events in a worker's `events` call (its phase too)."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


# Events per call, all tasks together (one task's batch stays bounded by EventsBody).
MAX_PROGRESS_EVENTS = 20_000


class ProgressBody(Strict):
    """A worker's running tasks' events, in one call (POST /worker-queues/{queue}/events):
    a streaming worker makes one call per round instead of one per task."""

    items: list[ProgressIn] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _bounded(self) -> ProgressBody:
        total = sum(len(i.events) for i in self.items)
        if total > MAX_PROGRESS_EVENTS:
            raise ValueError(f"{total} events in one call; the limit is {MAX_PROGRESS_EVENTS}")
        return self


class ProgressResult(BaseModel):
    id: str
    last_seq: int | None = None  # None when refused
    cancel_requested: bool = False
    problem: Problem | None = None  # why it was refused (409 stale_lease: no longer yours)


class ProgressOut(BaseModel):
    items: list[ProgressResult]
