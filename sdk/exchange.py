"""The worker's `exchange` call (POST /worker-queues/{queue}/exchange): the reports of
finished tasks and the next claim, in one request. See docs/protocol.md."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from sdk.schemas import ClaimBody, ClaimedOut, ErrorOut, EventIn, Strict, Token

__all__ = ["ExchangeBody", "ExchangeOut", "Problem", "ReportIn", "ReportOut"]


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
