"""The worker's side of a task: claim it, then act on it under the claim's lease.

Every call here is fenced by the lease (store.leases): a worker whose lease was lost or
replaced changes nothing. Like the rest of the store, calls take a `Tx`, flush only, and
leave the commit to the caller; status changes go through `store.statemachine`.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar, cast

import sqlalchemy as sa
from sqlmodel import select

from kernel import errors
from kernel.redact import redact, redact_data
from store import artifacts, catalog, fastrows, prereqs
from store.db import Tx
from store.events import EVENT_KINDS, RESERVED_KINDS, append
from store.leases import Lease, fenced, new_token, refusal
from store.models import Agent, Artifact, Task, TaskStatus, from_row, utcnow
from store.statemachine import send_claim, send_completions, send_transition, transition

_P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = [
    "PHASES",
    "Claimed",
    "Report",
    "WorkerEvents",
    "checked_batch",
    "claim_tasks",
    "complete",
    "fail",
    "heartbeat",
    "release",
    "report",
    "request_input",
    "save_artifact",
    "save_checkpoint",
    "send_claim_tasks",
    "send_reports",
    "worker_events",
    "worker_heartbeat",
]

S = TaskStatus
WorkerEvents = Sequence[tuple[str, dict[str, Any]]]
_tasks = Task.__table__


@dataclass
class Claimed:
    task: Task
    agent: Agent | None
    token: str  # the lease token: given to the claiming worker only, stored hashed
    # The worker's answer for it, built ahead by its hand-off's Parked.render while the
    # commit was awaited; whoever answers checks that it still holds (board_api/claims.py).
    rendered: object = None


async def send_claim_tasks(
    tx: Tx,
    queue: str,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    info: dict[str, Any] | None = None,
    *,
    touch: bool = True,
    capabilities: dict[str, Any] | None = None,
    digest: str | None = None,
) -> Callable[[], Awaitable[list[Claimed]]]:
    """Claim up to `limit` tasks with their agents; `touch` records the worker as alive.
    Sent: await what this returns for the tasks claimed (on PostgreSQL the answer may be
    read after the commit: see Tx.after); `claim_tasks` reads it at once.

    `capabilities` (sent when they change) or their `digest` (sent in between) say what the
    worker has: it gets only tasks whose prerequisites it meets (store/prereqs.py). A worker
    sending neither gets any task, as before."""
    if touch or capabilities is not None:
        await catalog.touch_worker(tx, worker_id, queue, info, capabilities=capabilities)
    token, token_hash = new_token()
    needs: tuple[str, ...] | None = None
    caps = await prereqs.worker_caps(tx, worker_id, digest, capabilities)
    if caps is not None:
        needs = await prereqs.plan(tx, queue, worker_id, caps, utcnow())
    take = await send_claim(tx, queue, worker_id, limit, lease_seconds, token_hash, needs=needs)

    async def read() -> list[Claimed]:
        tasks, rows = await take()
        agents = {name: from_row(Agent, r) for name, r in rows.items()}
        return [Claimed(t, agents.get(t.agent or ""), token) for t in tasks]

    return read


def _at_once(send: Callable[_P, Awaitable[Callable[[], Awaitable[_R]]]]) -> Callable[_P, Awaitable[_R]]:
    """`send`, its answer read as soon as it is sent."""

    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await (await send(*args, **kwargs))()

    return run


claim_tasks = _at_once(send_claim_tasks)


def _check_worker_events(events: WorkerEvents) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for kind, data in events:
        if kind not in EVENT_KINDS:
            raise errors.Invalid(f"unknown event kind {kind!r}", code="invalid_event_kind")
        if kind in RESERVED_KINDS:
            raise errors.Invalid(
                f"event kind {kind!r} is written by the control plane only", code="reserved_event_kind"
            )
        out.append((kind, data))
    return out


PHASES = ("planning", "executing")


def checked_batch(events: WorkerEvents, phase: str | None) -> list[tuple[str, dict[str, Any]]]:
    """A worker's batch of events, or the 4xx that refuses it (a kind it may not write, a
    phase that does not exist)."""
    if phase is not None and phase not in PHASES:
        raise errors.Invalid(f"phase must be one of {', '.join(PHASES)}", code="invalid_phase")
    return _check_worker_events(events)


async def worker_events(
    tx: Tx, task_id: str, lease: Lease, events: WorkerEvents, *, phase: str | None = None
) -> tuple[int, bool]:
    """Append a worker's batch (fenced), optionally moving its `phase`; returns
    (last_seq, cancel_requested)."""
    batch = checked_batch(events, phase)
    values = {"phase": phase} if phase else None
    last, cancel_requested = await append(tx, task_id, batch, lease=lease, values=values)
    if phase:
        tx.notify("board", task_id)
    return last, cancel_requested


async def heartbeat(tx: Tx, task_id: str, lease: Lease, lease_seconds: float) -> tuple[bool, datetime]:
    """Extend a held lease; returns (cancel requested, new expiry): whether to stop."""
    expires = utcnow() + timedelta(seconds=lease_seconds)
    stmt = (
        sa.update(_tasks)
        .where(_tasks.c.id == task_id, *lease.where())
        .values(lease_expires_at=expires)
        .returning(_tasks.c.cancel_requested)
    )
    row = (await tx.execute(stmt)).first()
    if row is None:
        raise await refusal(tx, task_id, lease)
    return bool(row.cancel_requested), expires


async def worker_heartbeat(
    tx: Tx,
    worker_id: str,
    queue: str,
    running: int,
    held: Sequence[tuple[str, str]],
    lease_seconds: float,
    queues: Collection[str] = (),
) -> tuple[list[str], list[str]]:
    """Extend every lease the worker still holds (`held`: task id, token). Returns (to
    cancel, lost). One UPDATE, fenced per task by its token (and the key's `queues`)."""
    await catalog.touch_worker(tx, worker_id, queue, {"running": running})
    if not held:
        return [], []
    by_hash: dict[str, list[str]] = {}
    for tid, token in held:
        by_hash.setdefault(Lease(token).hash, []).append(tid)
    # Tokens are per claim, so the worker's tasks group into a few (hash, ids) pairs.
    fence = sa.or_(
        *(sa.and_(_tasks.c.lease_token_hash == h, _tasks.c.id.in_(ids)) for h, ids in by_hash.items())
    )
    stmt = sa.update(_tasks).where(fence, _tasks.c.status == S.running.value)
    if queues:
        stmt = stmt.where(_tasks.c.queue.in_(sorted(queues)))
    expires = utcnow() + timedelta(seconds=lease_seconds)
    stmt = stmt.values(lease_expires_at=expires).returning(_tasks.c.id, _tasks.c.cancel_requested)
    kept = {r.id: bool(r.cancel_requested) for r in (await tx.execute(stmt)).all()}
    cancel = [tid for tid, _ in held if kept.get(tid)]
    lost = [tid for tid, _ in held if tid not in kept]
    return cancel, lost


async def request_input(
    tx: Tx,
    task_id: str,
    lease: Lease,
    *,
    question: str,
    choices: list[str] | None = None,
    key: str | None = None,
    checkpoint: Any = None,
    events: WorkerEvents = (),
) -> Task:
    """Park the task in Requires Input and release its worker."""
    if not question.strip():
        raise errors.Invalid("question must not be empty", code="validation_error")
    # `key` is issued here, new for every question: the worker's own name for it (`ref`, a
    # model's tool-call id that providers reuse every turn) cannot tell two questions apart.
    pending = {
        "question": redact(question),
        "choices": redact_data(choices or []),
        "key": f"q_{secrets.token_hex(8)}",
        "ref": key or "answer",
    }
    values: dict[str, Any] = {"pending_input": pending}
    if checkpoint is not None:
        values["checkpoint"] = redact_data(checkpoint)
    return await transition(
        tx,
        task_id,
        S.requires_input,
        lease=lease,
        values=values,
        extra_events=[*_check_worker_events(events), ("input_requested", pending)],
    )


async def complete(
    tx: Tx,
    task_id: str,
    lease: Lease,
    *,
    result: Any,
    usage: dict[str, Any] | None = None,
    events: WorkerEvents = (),
) -> Task:
    return await (await send_complete(tx, task_id, lease, result=result, usage=usage, events=events))()


async def send_complete(
    tx: Tx,
    task_id: str,
    lease: Lease,
    *,
    result: Any,
    usage: dict[str, Any] | None = None,
    events: WorkerEvents = (),
) -> Callable[[], Awaitable[Task]]:
    """`complete`, sent (statemachine.send_transition): await what it returns."""
    values: dict[str, Any] = {"result": redact_data(result)}
    if usage:
        values["usage"] = usage
    return await send_transition(
        tx, task_id, S.completed, lease=lease, values=values, extra_events=_check_worker_events(events)
    )


async def fail(
    tx: Tx, task_id: str, lease: Lease, *, code: str, message: str, events: WorkerEvents = ()
) -> Task:
    """The worker gave up on the task; after a cancel request this is how it acknowledges.
    The task keeps what it used: the last `usage` totals its runtime reported."""
    message = redact(message)  # shown on the board and in chats: mask what a runtime quoted
    task = await fenced(tx, task_id, lease)
    extra = _check_worker_events(events)
    used = await _reported_usage(tx, task_id, extra)
    spent = {"usage": used} if used else {}
    if task.cancel_requested:
        return await transition(
            tx,
            task_id,
            S.cancelled,
            lease=lease,
            values=spent,
            event={"reason": "cancelled"},
            extra_events=extra,
        )
    return await transition(
        tx,
        task_id,
        S.failed,
        lease=lease,
        values={"error_code": code[:64], "error_message": message[:4000], **spent},
        event={"error": {"code": code[:64], "message": message[:4000]}},
        extra_events=extra,
    )


@dataclass
class Report:
    """A worker's end of one task, as an exchange carries it: `error` (code, message) fails
    it, else it completes with `result`."""

    task_id: str
    lease: Lease
    result: Any = None
    usage: dict[str, Any] | None = None
    error: tuple[str, str] | None = None
    events: WorkerEvents = ()


Outcome = Task | errors.MetaAgentError


async def report(tx: Tx, reports: Sequence[Report]) -> list[Outcome]:
    """Apply each report in the caller's transaction (one commit for the whole batch); a
    refused one (a stale lease, a bad event) is returned as its error and writes nothing:
    every refusal is raised before the fenced UPDATE or by it."""
    return await (await send_reports(tx, reports))()


async def send_reports(tx: Tx, reports: Sequence[Report]) -> Callable[[], Awaitable[list[Outcome]]]:
    """`report`, sent: await what it returns for the outcomes, in order. The completions
    (a worker's common report) are sent without waiting for their answers, which come back
    with the next statement read (the exchange's claim): one round trip for the batch
    instead of one each; on PostgreSQL they are even one statement (_together). A failure
    reads the task first and is applied at once."""
    slots: list[Outcome | Callable[[], Awaitable[Task]] | None] = []
    together = _together(tx, reports)
    batch: list[tuple[int, Report, list[tuple[str, dict[str, Any]]]]] = []
    for r in reports:
        try:
            if r.error is not None:
                code, message = r.error
                slots.append(await fail(tx, r.task_id, r.lease, code=code, message=message, events=r.events))
            elif together:
                batch.append((len(slots), r, _check_worker_events(r.events)))
                slots.append(None)  # its share of the batch's one statement, sent below
            else:
                slots.append(
                    await send_complete(
                        tx, r.task_id, r.lease, result=r.result, usage=r.usage, events=r.events
                    )
                )
        except errors.MetaAgentError as exc:
            slots.append(exc)
    if batch:
        items = [(r.task_id, r.lease, redact_data(r.result), r.usage or None, ev) for _, r, ev in batch]
        for (i, _, _), settled in zip(batch, await send_completions(tx, items), strict=True):
            slots[i] = settled

    async def outcomes() -> list[Outcome]:
        out: list[Outcome] = []
        for slot in slots:
            assert slot is not None  # every batched one was filled
            if isinstance(slot, (Task, errors.MetaAgentError)):
                out.append(slot)
                continue
            try:
                out.append(await slot())
            except errors.MetaAgentError as exc:
                out.append(exc)
        return out

    return outcomes


def _together(tx: Tx, reports: Sequence[Report]) -> bool:
    """Whether the completions of `reports` go as one statement (statemachine.
    send_completions): on PostgreSQL, two or more of them, each task reported once, under
    one key's queues."""
    if tx.db.is_sqlite or sum(r.error is None for r in reports) < 2:
        return False
    return (
        len({r.task_id for r in reports}) == len(reports)
        and len({frozenset(r.lease.queues) for r in reports}) == 1
    )


async def _reported_usage(
    tx: Tx, task_id: str, events: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any] | None:
    """The last `usage` event's running totals: in this batch, else already stored."""
    for kind, data in reversed(events):
        if kind == "usage":
            return data
    found = await fastrows.last_usage(tx, task_id)  # not the ORM: see leases.fenced
    return cast("dict[str, Any]", found) if isinstance(found, dict) else None


async def release(tx: Tx, task_id: str, lease: Lease, *, events: WorkerEvents = ()) -> Task:
    """A worker shutting down hands the task back; this costs the task no attempt."""
    task = await fenced(tx, task_id, lease)
    if task.cancel_requested:
        return await transition(
            tx,
            task_id,
            S.cancelled,
            lease=lease,
            event={"reason": "cancelled"},
            extra_events=_check_worker_events(events),
        )
    return await transition(
        tx,
        task_id,
        S.pending,
        lease=lease,
        event={"reason": "released by worker"},
        extra_events=_check_worker_events(events),
    )


async def save_checkpoint(tx: Tx, task_id: str, lease: Lease, checkpoint: Any) -> None:
    """Store the model's memory, masked like the event log: a secret stays in the running
    worker's memory only, and a resumed model reads `[redacted]` where its log does too."""
    stmt = (
        sa.update(_tasks)
        .where(_tasks.c.id == task_id, *lease.where())
        .values(checkpoint=redact_data(checkpoint), updated_at=utcnow())
        .returning(_tasks.c.id)
    )
    if (await tx.execute(stmt)).first() is None:
        raise await refusal(tx, task_id, lease)


async def save_artifact(
    tx: Tx, task_id: str, lease: Lease, *, name: str, media_type: str, content: artifacts.Staged
) -> Artifact:
    """Make the staged upload `content` the task's artifact `name` (replacing one by that name)."""
    artifacts.check_name(name)
    # The fenced append comes first: it refuses a stale lease before anything is written,
    # and holds the task row (PostgreSQL) so no re-claim slips in before the commit.
    meta = {"name": name, "media_type": media_type, "size": content.size, "sha256": content.sha256}
    await append(tx, task_id, [("artifact", meta)], lease=lease)
    existing = (
        (await tx.session.execute(select(Artifact).where(Artifact.task_id == task_id, Artifact.name == name)))
        .scalars()
        .first()
    )
    if existing is not None:
        await artifacts.drop_chunks(tx, existing.id)
        await tx.session.delete(existing)
        await tx.session.flush()
    art = Artifact(
        id=content.id,
        task_id=task_id,
        name=name,
        media_type=media_type,
        size=content.size,
        sha256=content.sha256,
    )
    tx.session.add(art)
    await tx.session.flush()
    return art
