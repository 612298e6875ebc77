"""The worker protocol: long-poll claim, heartbeats, events, input, completion.

Every task call carries the lease token from the claim (in the body, or the `X-Lease-Token`
header of an artifact upload); a stale one gets 409 `stale_lease` and changes nothing. A
worker key bound to queues gets 403 `queue_not_allowed` on any other queue. See
docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from board_api import claims, wire
from board_api.deps import DbDep, Principal, SettingsDep, WorkerKey
from board_api.metrics import Metrics
from board_api.state import app_state
from board_api.tracing import task_out
from kernel.errors import MetaAgentError
from kernel.settings import Settings
from sdk.exchange import (
    ExchangeBody,
    ExchangeOut,
    Problem,
    ProgressBody,
    ProgressOut,
    ProgressResult,
    ReportOut,
)
from sdk.schemas import (
    ArtifactOut,
    CheckpointBody,
    ClaimBody,
    ClaimOut,
    CompleteBody,
    EventIn,
    EventsBody,
    EventsOut,
    FailBody,
    ReleaseBody,
    RequestInputBody,
    TaskHeartbeatOut,
    TaskOut,
    Token,
    TokenBody,
    WorkerHeartbeatBody,
    WorkerHeartbeatOut,
)
from store import artifacts, catalog, progress, tasks
from store.db import Database, Tx
from store.handoff import give_back, handoffs
from store.leases import Lease, queue_refused
from store.models import Task, utcnow

router = APIRouter()
# Even with no wake-up, an idle claim re-checks the queue this often (a lost cross-replica
# notification then costs at most this much latency).
CLAIM_RECHECK = 5.0
WORKER_TOUCH_SECONDS = 5.0


def _events(items: list[EventIn]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, e.data) for e in items]


def lease(p: Principal, token: str) -> Lease:
    return Lease(token, p.queues)


@router.post("/worker-queues/{queue}/claim", response_model=ClaimOut)
async def claim(
    queue: str, body: ClaimBody, request: Request, db: DbDep, settings: SettingsDep, p: WorkerKey
) -> Response:
    """Long-poll for up to `max_tasks` tasks of the queue; answers at once when one arrives."""
    _, claimed = await _poll(queue, body, [], request, db, settings, p)
    return claims.claim_answer(claimed)


@router.post("/worker-queues/{queue}/exchange", response_model=ExchangeOut)
async def exchange(
    queue: str, body: ExchangeBody, request: Request, db: DbDep, settings: SettingsDep, p: WorkerKey
) -> Response:
    """Report finished tasks and claim up to `max_tasks` more, in one transaction.

    The worker's one call per round (complete-and-claim-next): each report is applied or
    refused on its own (`reports[i].problem`; 409 `stale_lease` means the task is no longer
    the worker's), all of them committed before the answer. With reports it answers at once;
    without, it long-polls like `claim`."""
    reports = [
        tasks.Report(
            r.id,
            lease(p, r.token),
            result=r.result,
            usage=r.usage,
            error=(r.error.code, r.error.message) if r.error else None,
            events=_events(r.events),
        )
        for r in body.reports
    ]
    done, claimed = await _poll(queue, body, reports, request, db, settings, p)
    metrics = app_state(request).metrics
    outs: list[ReportOut] = []
    for r, d in zip(body.reports, done, strict=True):
        if isinstance(d, MetaAgentError):
            outs.append(ReportOut(id=r.id, problem=Problem(status=d.status, code=d.code, detail=d.detail)))
        else:
            metrics.finished(d)
            outs.append(ReportOut(id=r.id, status=d.status))
    return claims.exchange_answer(outs, claimed)


async def _poll(
    queue: str,
    body: ClaimBody,
    reports: list[tasks.Report],
    request: Request,
    db: Database,
    settings: Settings,
    p: Principal,
) -> tuple[list[Task | MetaAgentError], list[bytes]]:
    """Apply `reports` and claim in one transaction; with nothing claimed and nothing
    reported, wait for the queue's wake-up (or `wait_seconds`) and claim again."""
    if p.queues and queue not in p.queues:
        raise queue_refused(queue)
    state = app_state(request)
    info = body.model_dump(include={"name", "hostname", "capacity", "version"}, exclude_none=True)
    caps = body.capabilities.model_dump() if body.capabilities else None
    digest = body.capabilities.digest if body.capabilities else body.capabilities_digest
    topic = f"queue:{queue}"
    deadline = time.monotonic() + body.wait_seconds
    checked_queue = False
    release: Callable[[], None] | None = None
    done: list[Task | MetaAgentError] = []
    try:
        while True:
            version = db.hub.version(topic)
            touch = _due_touch(state.worker_seen, body.worker_id)
            work = functools.partial(
                _report_and_claim, queue, body, reports, settings.lease_seconds, info, touch, caps, digest
            )
            done, claimed = await db.fast_or_full(work)
            if body.max_tasks:
                caps = None  # recorded: later rounds name them by digest
            if claimed or reports:
                return done, _claimed(claimed, settings.lease_seconds, state.metrics)
            if not checked_queue:  # only an empty answer needs to know the queue exists
                await catalog.check_queue(db, queue)
                checked_queue = True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or state.draining:
                return done, []
            # A claim parked for tasks watches its worker's leaving itself (`_parked`), so a
            # worker gone already is answered at once there. Starlette's `is_disconnected`
            # cost ~19 µs a round: its anyio cancel scope formats the task's repr.
            if not body.max_tasks and await request.is_disconnected():
                return done, []
            if release is None:  # parked: this long-poll now holds a connection slot
                release = state.limiter.acquire(p)
            handed = await _parked(
                queue, body, request, db, settings.lease_seconds, digest, topic, version, remaining
            )
            if handed is None:  # the worker left
                return done, []
            if handed:
                return done, _claimed(handed, settings.lease_seconds, state.metrics)
            info = {}
    finally:
        if release is not None:
            release()


async def _parked(
    queue: str,
    body: ClaimBody,
    request: Request,
    db: Database,
    lease_seconds: float,
    digest: str | None,
    topic: str,
    version: int,
    remaining: float,
) -> list[tasks.Claimed] | None:
    """Wait for the queue's wake-up, parked where a task's creation in this process can
    claim for this worker in its own transaction (store.handoff): what it claimed, if so
    ([] if not); None if the worker left meanwhile."""
    if not body.max_tasks:
        await db.hub.wait(topic, version, min(remaining, CLAIM_RECHECK))
        return None if await request.is_disconnected() else []

    async def claim(tx: Tx) -> Callable[[], Awaitable[list[tasks.Claimed]]]:
        return await tasks.send_claim_tasks(
            tx, queue, body.worker_id, body.max_tasks, lease_seconds, {}, touch=False, digest=digest
        )

    render = claims.ahead(lease_seconds) if db.fast_reads else None  # PostgreSQL: store/born.py
    parked = handoffs(db).park(
        queue, claim, worker_id=body.worker_id, lease_seconds=lease_seconds, render=render
    )
    # The worker's leaving, watched while parked: its body has been read, so `receive` has
    # nothing more to give but the disconnect. It wakes the claim at once (no creation may
    # hand it a task after), and it is known without asking when the claim wakes: asking
    # then (Starlette's `is_disconnected`) cost turns of the event loop between a hand-off
    # and the worker's answer.
    leaving = asyncio.ensure_future(request.receive())
    woken = asyncio.get_running_loop().create_future()
    for cause in (parked.outcome, leaving):
        cause.add_done_callback(lambda _: woken.done() or woken.set_result(None))
    try:
        await db.hub.wait(topic, version, min(remaining, CLAIM_RECHECK), wake=woken)
        # Awake: no creator takes it from now on. One that took it already delivers:
        # answered once the creator's transaction ends (None if it failed).
        handoffs(db).withdraw(parked)
        handed = (await parked.outcome if parked.taken else None) or []
        # A worker that gave up on this long-poll (it is stopping) must not be granted a
        # task it will never run: that would cost a lease expiry and an attempt.
        if _left(leaving):
            if handed:
                await give_back(db, handed)
            return None
        return handed
    finally:
        leaving.cancel()
        # Its answer is written in this turn of the event loop: the creator that handed it
        # a task answers after it (store.handoff).
        handoffs(db).leave(parked)


def _left(leaving: asyncio.Future[Any]) -> bool:
    """Whether the `receive()` watched while parked says the worker disconnected."""
    if not leaving.done() or leaving.cancelled():
        return False
    if leaving.exception() is not None:
        return True  # nothing more can be read from it: as good as gone
    return leaving.result().get("type") == "http.disconnect"


async def _report_and_claim(
    queue: str,
    body: ClaimBody,
    reports: list[tasks.Report],
    lease_seconds: float,
    info: dict[str, Any],
    touch: bool,
    caps: dict[str, Any] | None,
    digest: str | None,
    tx: Tx,
) -> tuple[list[Task | MetaAgentError], list[tasks.Claimed]]:
    # The reports are sent, and read after the claim: on PostgreSQL they share its round
    # trip (store.work.send_reports), and where the rows may be read after the commit
    # (Tx.deferrable) the Sync goes with them too: one round trip for the whole exchange.
    sent = await tasks.send_reports(tx, reports) if reports else None
    if not body.max_tasks:
        return (await sent() if sent else []), []
    take = await tasks.send_claim_tasks(
        tx,
        queue,
        body.worker_id,
        body.max_tasks,
        lease_seconds,
        info,
        touch=touch,
        capabilities=caps,
        digest=digest,
    )
    if not tx.deferrable:
        return (await sent() if sent else []), await take()
    done: list[Task | MetaAgentError] = []
    claimed: list[tasks.Claimed] = []

    async def read() -> None:
        done.extend(await sent() if sent else [])
        claimed.extend(await take())

    tx.after.append(read)
    return done, claimed


def _due_touch(seen: dict[str, float], worker_id: str) -> bool:
    """Whether this claim records the worker's liveness. On every claim would add a write to
    the hot path; once every few seconds is plenty (the live window is 45 s)."""
    now = time.monotonic()
    if now - seen.get(worker_id, 0.0) > WORKER_TOUCH_SECONDS:
        seen[worker_id] = now
        return True
    return False


def _claimed(claimed: list[tasks.Claimed], lease_seconds: float, metrics: Metrics) -> list[bytes]:
    """The claim's answer, each task's ClaimedOut (board_api/claims.py); a first attempt's
    wait in the queue goes to the dispatch metric."""
    now = utcnow()
    for c in claimed:
        if c.task.attempt == 1 and c.task.started_at:
            metrics.dispatch.observe(max(0.0, (now - c.task.created_at).total_seconds()))
    return claims.items(claimed, lease_seconds)


@router.post("/workers/{worker_id}/heartbeat", response_model=WorkerHeartbeatOut)
async def worker_heartbeat(
    worker_id: str, body: WorkerHeartbeatBody, db: DbDep, settings: SettingsDep, p: WorkerKey
) -> WorkerHeartbeatOut:
    """Worker liveness; extends every lease it still holds and says which to cancel or drop."""
    async with db.tx() as tx:
        cancel, lost = await tasks.worker_heartbeat(
            tx,
            worker_id,
            body.queue,
            body.running,
            [(t.id, t.token) for t in body.tasks],
            settings.lease_seconds,
            p.queues,
        )
    return WorkerHeartbeatOut(cancel=cancel, lost=lost, lease_seconds=settings.lease_seconds)


@router.delete("/workers/{worker_id}", status_code=204)
async def worker_bye(worker_id: str, db: DbDep, _: WorkerKey) -> Response:
    """A worker shutting down cleanly leaves the live list."""
    async with db.tx() as tx:
        await tasks.worker_gone(tx, worker_id)
    return Response(status_code=204)


@router.post("/tasks/{task_id}/heartbeat", response_model=TaskHeartbeatOut)
async def task_heartbeat(
    task_id: str, body: TokenBody, db: DbDep, settings: SettingsDep, p: WorkerKey
) -> TaskHeartbeatOut:
    """Extend one task's lease."""
    async with db.tx() as tx:
        cancel, expires = await tasks.heartbeat(tx, task_id, lease(p, body.token), settings.lease_seconds)
    return TaskHeartbeatOut(cancel_requested=cancel, lease_expires_at=expires)


@router.post("/tasks/{task_id}/events", response_model=EventsOut)
async def post_events(task_id: str, body: EventsBody, request: Request, db: DbDep, p: WorkerKey) -> EventsOut:
    """Append a batch of the worker's events to the task's log."""
    held, events = lease(p, body.token), _events(body.events)
    last, cancel = await db.fast_or_full(
        lambda tx: tasks.worker_events(tx, task_id, held, events, phase=body.phase)
    )
    app_state(request).metrics.events.inc(len(body.events))
    return EventsOut(last_seq=last, cancel_requested=cancel)


@router.post("/worker-queues/{queue}/events", response_model=ProgressOut)
async def post_progress(
    queue: str, body: ProgressBody, request: Request, db: DbDep, p: WorkerKey
) -> Response:
    """Append the events of several running tasks in one transaction (a streaming worker's
    one call per round). Each task's batch is applied or refused on its own
    (`items[i].problem`; 409 `stale_lease`: no longer the worker's)."""
    if p.queues and queue not in p.queues:
        raise queue_refused(queue)
    items = [(i.id, lease(p, i.token), _events(i.events), i.phase) for i in body.items]
    results = await db.fast_or_full(lambda tx: progress.worker_events_many(tx, items))
    metrics = app_state(request).metrics
    out: list[ProgressResult] = []
    for (task_id, _, events, _), r in zip(items, results, strict=True):
        if isinstance(r, MetaAgentError):
            out.append(
                ProgressResult(id=task_id, problem=Problem(status=r.status, code=r.code, detail=r.detail))
            )
        else:
            metrics.events.inc(len(events))
            out.append(ProgressResult(id=task_id, last_seq=r[0], cancel_requested=r[1]))
    return wire.json_response(ProgressOut(items=out))


@router.post("/tasks/{task_id}/request-input", response_model=TaskOut)
async def request_input(task_id: str, body: RequestInputBody, db: DbDep, p: WorkerKey) -> TaskOut:
    """Park the task in Requires Input with a question; the worker lets go of it."""
    async with db.tx() as tx:
        task = await tasks.request_input(
            tx,
            task_id,
            lease(p, body.token),
            question=body.question,
            choices=body.choices,
            key=body.key,
            checkpoint=body.checkpoint,
            events=_events(body.events),
        )
    return task_out(task)


@router.post("/tasks/{task_id}/complete", response_model=TaskOut)
async def complete(task_id: str, body: CompleteBody, request: Request, db: DbDep, p: WorkerKey) -> TaskOut:
    """Finish the task with its result (and the last events)."""

    async def work(tx: Tx) -> Task:
        return await tasks.complete(
            tx,
            task_id,
            lease(p, body.token),
            result=body.result,
            usage=body.usage,
            events=_events(body.events),
        )

    # The fast path's statements, as an exchange's report: a worker built on the SDK that
    # completes task by task (no exchange) should not pay the ORM session per task.
    task = await db.fast_or_full(work)
    app_state(request).metrics.finished(task)
    return task_out(task)


@router.post("/tasks/{task_id}/fail", response_model=TaskOut)
async def fail(task_id: str, body: FailBody, request: Request, db: DbDep, p: WorkerKey) -> TaskOut:
    """Fail the task (or acknowledge a cancel: the task then ends `cancelled`)."""

    async def work(tx: Tx) -> Task:
        return await tasks.fail(
            tx,
            task_id,
            lease(p, body.token),
            code=body.error.code,
            message=body.error.message,
            events=_events(body.events),
        )

    task = await db.fast_or_full(work)  # as `complete`
    app_state(request).metrics.finished(task)
    return task_out(task)


@router.post("/tasks/{task_id}/release", response_model=TaskOut)
async def release(task_id: str, body: ReleaseBody, db: DbDep, p: WorkerKey) -> TaskOut:
    """Hand a task back to the queue (worker shutting down)."""

    async def work(tx: Tx) -> Task:
        return await tasks.release(tx, task_id, lease(p, body.token), events=_events(body.events))

    return task_out(await db.fast_or_full(work))  # as `complete`


@router.post("/tasks/{task_id}/checkpoint")
async def checkpoint(task_id: str, body: CheckpointBody, db: DbDep, p: WorkerKey) -> dict[str, bool]:
    """Save the task's resumable state."""
    async with db.tx() as tx:
        await tasks.save_checkpoint(tx, task_id, lease(p, body.token), body.checkpoint)
    return {"ok": True}


@router.put("/tasks/{task_id}/artifacts/{name:path}", response_model=ArtifactOut, status_code=201)
async def put_artifact(
    task_id: str,
    name: str,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    p: WorkerKey,
    token: Annotated[Token, Header(alias="X-Lease-Token")],
) -> ArtifactOut:
    """Upload a file the task produced (raw body, streamed to storage)."""
    artifacts.check_name(name)
    media_type = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
    async with artifacts.upload(db, request.stream(), limit=settings.max_artifact_bytes) as content:
        async with db.tx() as tx:
            art = await tasks.save_artifact(
                tx, task_id, lease(p, token), name=name, media_type=media_type[:100], content=content
            )
    return wire.artifact_out(art)


__all__ = ["router"]
