"""Tasks (executions): create, list, inspect, act on; and the board summary."""

from __future__ import annotations

from typing import Annotated, TypedDict
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from board_api import wire
from board_api.auditing import Who, task_details
from board_api.deps import DbDep, Operator, Principal, SettingsDep, Viewer
from board_api.tracing import task_out
from kernel import errors
from sdk.schemas import (
    ArtifactPage,
    BoardColumn,
    BoardOut,
    EventPage,
    InputBody,
    RetryBody,
    TaskCreate,
    TaskOut,
    TaskPage,
)
from store import artifacts, tasks
from store.audit import record
from store.db import Database, Tx
from store.events import list_after
from store.handoff import create_handing_off
from store.leases import Lease
from store.models import Task, TaskStatus

router = APIRouter()

StatusQ = Annotated[list[str] | None, Query(description="one or more statuses (repeat or comma-separate)")]
FailureQ = Annotated[str | None, Query(max_length=64, description="a failure class, e.g. tool_error")]


def split_statuses(status: list[str] | None) -> list[str] | None:
    """`?status=a,b&status=c` as one list (None: no filter)."""
    if not status:
        return None
    return [s.strip() for item in status for s in item.split(",") if s.strip()]


LeaseHeader = Annotated[
    str | None,
    Header(
        alias="X-Lease-Token",
        max_length=128,
        description="a worker key's lease token of the parent task (delegations only)",
    ),
]


def _parent_lease(p: Principal, token: str | None) -> Lease | None:
    """None for an operator; for a worker key, the lease it must hold on the parent task.

    A worker key may create (and answer) child tasks only: a team coordinator's delegations,
    made by the worker that holds the coordinator task's current lease."""
    if p.can("operator"):
        return None
    if not p.can("worker"):
        raise errors.Forbidden("this key lacks the 'operator' scope", code="insufficient_scope")
    if not token:
        raise errors.Forbidden(
            "a worker key acts only on the children of the task it holds: send that task as "
            "`parent_id` and its lease token in the X-Lease-Token header",
            code="insufficient_scope",
        )
    return Lease(token, p.queues)


@router.post("/tasks", response_model=TaskOut, status_code=201)
async def create_task(
    body: TaskCreate, db: DbDep, settings: SettingsDep, p: Viewer, who: Who, lease_token: LeaseHeader = None
) -> Response:
    """Create a task for an agent or a team."""
    parent_lease = _parent_lease(p, lease_token)
    new = tasks.NewTask(**body.model_dump())
    new.requested_by = new.requested_by or (p.name if p.key_id else None)

    async def work(tx: Tx) -> Task:
        task = await tasks.create_task(
            tx,
            new,
            max_prompt_chars=settings.max_prompt_chars,
            max_attempts=settings.max_attempts,
            parent_lease=parent_lease,
        )
        await record(tx, who.via(task.source), "task.create", "task", task.id, task_details(task))
        return task

    # A worker's claim parked on the task's queue is answered from this transaction.
    task = await create_handing_off(db, work)
    return wire.json_response(task_out(task), 201)


@router.get("/tasks", response_model=TaskPage)
async def list_tasks(
    db: DbDep,
    _: Viewer,
    status: StatusQ = None,
    agent: str | None = None,
    team: str | None = None,
    queue: str | None = None,
    type: str | None = None,
    source: str | None = None,
    q: Annotated[str | None, Query(max_length=500)] = None,
    failure: FailureQ = None,
    # Range-checked by the store (`invalid_limit`); the bound is stated here for the schema.
    limit: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": 200})] = 50,
    cursor: str | None = None,
) -> TaskPage:
    """List tasks, newest first, filtered; page with `cursor`."""
    async with db.read() as s:
        items, nxt = await tasks.list_tasks(
            s,
            limit=limit,
            cursor=cursor,
            status=split_statuses(status),
            agent=agent,
            team=team,
            queue=queue,
            type=type,
            source=source,
            q=q,
            failure=failure,
        )
    return TaskPage(items=[wire.task_out(t) for t in items], next_cursor=nxt)


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: str, db: DbDep, _: Viewer) -> TaskOut:
    """One task: overview, pending question, result, error, usage."""
    async with db.read() as s:
        return wire.task_out(await tasks.get_task(s, task_id))


@router.get("/tasks/{task_id}/events", response_model=EventPage)
async def list_events(
    task_id: str,
    db: DbDep,
    _: Viewer,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> EventPage:
    """A page of the task's event log after `after`."""
    async with db.read() as s:
        task = await tasks.get_task(s, task_id)
        events = await list_after(s, task_id, after, limit)
    return EventPage(items=[wire.event_out(e) for e in events], last_seq=task.last_seq, status=task.status)


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut)
async def cancel_task(task_id: str, db: DbDep, p: Operator, who: Who) -> TaskOut:
    """Cancel: at once when pending or waiting for input; a running task's worker is told to stop."""
    async with db.tx() as tx:
        task = await tasks.cancel(tx, task_id, by=p.name)
        await record(tx, who, "task.cancel", "task", task_id, {"status": task.status})
    return task_out(task)


@router.post("/tasks/{task_id}/retry", response_model=TaskOut, status_code=201)
async def retry_task(
    task_id: str, db: DbDep, settings: SettingsDep, p: Operator, who: Who, body: RetryBody | None = None
) -> TaskOut:
    """Run a finished task again as a new task linked by `retry_of`."""
    body = body or RetryBody()
    async with db.tx() as tx:
        task = await tasks.retry(
            tx,
            task_id,
            source=body.source,
            requested_by=body.requested_by or (p.name if p.key_id else None),
            max_prompt_chars=settings.max_prompt_chars,
            max_attempts=settings.max_attempts,
        )
        await record(tx, who.via(task.source), "task.retry", "task", task_id, {"new_task_id": task.id})
    return task_out(task)


@router.post("/tasks/{task_id}/input", response_model=TaskOut)
async def answer_task(
    task_id: str, body: InputBody, db: DbDep, p: Viewer, who: Who, lease_token: LeaseHeader = None
) -> TaskOut:
    """Answer the question of a Requires Input task; it resumes on a worker."""
    parent_lease = _parent_lease(p, lease_token)
    async with db.tx() as tx:
        task = await tasks.respond(
            tx, task_id, body.answer, by=p.name, parent_lease=parent_lease, key=body.key
        )
        # The answer itself is the task's event log's (input_received), not the audit log's.
        await record(tx, who, "task.answer", "task", task_id, {"key": body.key} if body.key else None)
    return task_out(task)


@router.get("/tasks/{task_id}/artifacts", response_model=ArtifactPage)
async def list_artifacts(task_id: str, db: DbDep, _: Viewer) -> ArtifactPage:
    """Files the task produced."""
    async with db.read() as s:
        return ArtifactPage(items=[wire.artifact_out(a) for a in await tasks.list_artifacts(s, task_id)])


@router.get(
    "/tasks/{task_id}/artifacts/{name:path}", responses={200: {"content": {"application/octet-stream": {}}}}
)
async def get_artifact(task_id: str, name: str, db: DbDep, _: Viewer) -> Response:
    """Download one artifact."""
    async with db.read() as s:
        art = await tasks.get_artifact(s, task_id, name)
    headers = {
        "Content-Disposition": content_disposition(name),
        "ETag": f'"{art.sha256}"',
        "Content-Length": str(art.size),
    }
    return StreamingResponse(artifacts.chunks(db, art.id), media_type=art.media_type, headers=headers)


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII `filename` and the exact name as RFC 6266 `filename*`.

    Header values travel as Latin-1, so a name such as `报告.md` put there raw fails to
    encode (a 500 on every download); RFC 5987 percent-encodes it as UTF-8 instead, and
    clients that only read `filename` get a readable ASCII stand-in.
    """
    base = name.rsplit("/", 1)[-1]
    ascii_name = "".join(c if " " <= c <= "~" and c not in '"\\;%' else "_" for c in base) or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base, safe='')}"


@router.get("/board", response_model=BoardOut)
async def board(
    db: DbDep,
    _: Viewer,
    agent: str | None = None,
    team: str | None = None,
    queue: str | None = None,
    type: str | None = None,
    source: str | None = None,
    q: Annotated[str | None, Query(max_length=500)] = None,
    failure: FailureQ = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> BoardOut:
    """Column counts and the newest cards of each column."""
    filters = BoardFilters(agent=agent, team=team, queue=queue, type=type, source=source, q=q)
    filters["failure"] = failure
    return await board_snapshot(db, limit, filters)


class BoardFilters(TypedDict, total=False):
    """The board's filters, as `store.tasks` takes them (None: no filter)."""

    agent: str | None
    team: str | None
    queue: str | None
    type: str | None
    source: str | None
    q: str | None
    failure: str | None


async def board_snapshot(db: Database, limit: int, filters: BoardFilters) -> BoardOut:
    async with db.read() as s:
        counts = await tasks.count_by_status_capped(s, **filters)
        columns: dict[str, BoardColumn] = {}
        for status in TaskStatus:
            items: list[TaskOut] = []
            n, capped = counts[status.value]
            if n:
                page, _ = await tasks.list_tasks(s, limit=limit, status=[status.value], **filters)
                items = [wire.task_out(t) for t in page]
            columns[status.value] = BoardColumn(count=n, count_capped=capped, items=items)
    return BoardOut(columns=columns)
