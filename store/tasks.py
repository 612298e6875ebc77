"""Task services for people: create, read, cancel, retry and answer tasks.

Services take a `Tx` (writes) or a session (reads), flush only, and leave the commit to the
caller's `Database.tx()`. Status changes go through `store.statemachine`.

The worker's calls (`store.work`) and the reaper's (`store.reaper`) live in modules of
their own; they are re-exported here so that `store.tasks` stays the one name callers use
for the task service.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from kernel import errors
from store import catalog, fastpath, prereqs
from store.db import Tx
from store.events import insert_rows
from store.failure_filter import failure_clause
from store.leases import Lease, fenced, refusal
from store.models import TERMINAL, Artifact, Task, TaskStatus, build, utcnow
from store.reaper import forget_dead_workers, has_expired_leases, reap_expired, worker_gone
from store.statemachine import create, transition, transition_many
from store.work import (
    Claimed,
    Report,
    claim_tasks,
    complete,
    fail,
    heartbeat,
    release,
    report,
    request_input,
    save_artifact,
    save_checkpoint,
    send_claim_tasks,
    send_reports,
    worker_events,
    worker_heartbeat,
)

__all__ = [
    "BOARD_COUNT_CAP",
    "SOURCES",
    "Claimed",
    "NewTask",
    "Report",
    "cancel",
    "claim_tasks",
    "complete",
    "count_by_status",
    "count_by_status_capped",
    "create_task",
    "fail",
    "forget_dead_workers",
    "get_artifact",
    "get_task",
    "has_expired_leases",
    "heartbeat",
    "list_artifacts",
    "list_tasks",
    "reap_expired",
    "release",
    "report",
    "request_input",
    "respond",
    "retry",
    "save_artifact",
    "save_checkpoint",
    "send_claim_tasks",
    "send_reports",
    "worker_events",
    "worker_gone",
    "worker_heartbeat",
]

S = TaskStatus
_Select = TypeVar("_Select", bound=sa.Select[*tuple[Any, ...]])
ACTIVE = (S.pending.value, S.running.value, S.requires_input.value)
SOURCES = frozenset(
    {"api", "sdk", "cli", "mcp", "slack", "board", "meta_agent", "worker", "schedule", "webhook", "a2a"}
)
_tasks = Task.__table__


@dataclass
class NewTask:
    prompt: str
    agent: str | None = None
    team: str | None = None
    queue: str | None = None
    parameters: dict[str, Any] | None = None
    source: str = "api"
    requested_by: str | None = None
    parent_id: str | None = None
    retry_of: str | None = None
    plan: dict[str, Any] | None = None  # the meta agent's plan (sdk.schemas.PlanIn)
    schedule_id: str | None = None  # the schedule that started it (store.schedules)


async def _resolve_queue(tx: Tx, requested: str | None, default: str | None, owner: str) -> str:
    """Which queue a new task goes to: the one rule, whichever surface creates the task (REST,
    CLI, MCP, Slack). The queue asked for, else the owner's default queue, else the only queue
    there is (the task waits there for a worker), else the one queue with live workers."""
    if requested:
        return (await catalog.get_queue(tx.session, requested)).name
    if default:
        return default
    queues = await catalog.list_queues(tx.session)
    if len(queues) == 1:
        return queues[0].name
    live_names = {w.queue for w in await catalog.list_workers(tx.session)}
    live = [q.name for q in queues if q.name in live_names]
    if len(live) == 1:
        return live[0]
    if live:
        raise errors.Invalid(
            f"{owner} has no default queue and several queues have live workers ({', '.join(live)}); "
            "name one with `queue`",
            code="queue_required",
        )
    raise errors.Invalid(
        f"No worker is live on any queue, and {owner} has no default queue, so nothing would run "
        "the task: start a worker (`meta-agent worker start --queue NAME`), or name a queue with "
        "`queue` to leave the task waiting there until one starts",
        code="queue_required",
    )


async def create_task(
    tx: Tx,
    new: NewTask,
    *,
    max_prompt_chars: int = 100_000,
    max_attempts: int = 3,
    parent_lease: Lease | None = None,
) -> Task:
    """Validate and insert a pending task for an agent or a team.

    With `parent_lease` the caller is a worker delegating part of its task: see
    `_worker_child`."""
    if parent_lease is not None:
        await _worker_child(tx, new, parent_lease)
    if bool(new.agent) == bool(new.team):
        raise errors.Invalid("give exactly one of `agent` or `team`", code="agent_or_team_required")
    if len(new.prompt) > max_prompt_chars:
        raise errors.Invalid(
            f"prompt is {len(new.prompt)} characters; the limit is {max_prompt_chars}", code="prompt_too_long"
        )
    if new.source not in SOURCES:
        raise errors.Invalid(f"source must be one of {', '.join(sorted(SOURCES))}", code="invalid_source")
    params = new.parameters or {}
    if len(json.dumps(params, default=str)) > max_prompt_chars:
        raise errors.Invalid("parameters are too large", code="parameters_too_large")
    if new.agent:
        owner_name, default_queue, requires = await _agent_routing(tx, new.agent)
        agent_name, team_name = owner_name, None
    else:
        team = await catalog.get_team(tx.session, new.team or "")
        owner_name, default_queue = team.name, team.default_queue
        agent_name, team_name = team.coordinator, team.name
        coordinator = await fastpath.agents(tx, [team.coordinator])
        requires: dict[str, Any] = coordinator[0]["requires"] if coordinator else {}
    queue = await _resolve_queue(
        tx, new.queue, default_queue, f"{'agent' if new.agent else 'team'} {owner_name!r}"
    )
    if new.parent_id:
        await get_task(tx.session, new.parent_id)
    task = build(
        Task,
        agent=agent_name,
        team=team_name,
        queue=queue,
        prompt=new.prompt,
        parameters=params,
        source=new.source,
        requested_by=new.requested_by,
        parent_id=new.parent_id,
        retry_of=new.retry_of,
        max_attempts=max_attempts,
        plan=new.plan,
        schedule_id=new.schedule_id,
        needs=await prereqs.needs_for(lambda: tx.session, requires),
    )
    if task.needs:  # before the queue's wake-up: a claim it wakes must look for needs
        tx.notify(prereqs.topic(queue))
    return await create(tx, task)


async def _agent_routing(tx: Tx, key: str) -> tuple[str, str | None, dict[str, Any]]:
    """(name, default queue, requires) of an agent by id or name: all a new task needs."""
    found = await fastpath.agent_routing(tx, key)
    if found is None:
        raise errors.NotFound(f"agent {key!r} not found", code="agent_not_found")
    return found


async def _worker_child(tx: Tx, new: NewTask, lease: Lease) -> None:
    """A worker may create a task only as a child of the task it holds the lease of, for a
    member of that task's team (a coordinator's delegation), on the member's own queue and
    on behalf of whoever asked for the parent."""
    if not new.parent_id:
        raise errors.Forbidden(
            "a worker key creates child tasks only (give `parent_id`)", code="insufficient_scope"
        )
    parents = _tasks.alias("p")
    row = (
        await tx.execute(
            sa.select(parents.c.team, parents.c.requested_by)
            .where(parents.c.id == new.parent_id, *lease.where(parents))
            .with_for_update()
        )
    ).first()
    if row is None:
        raise await refusal(tx, new.parent_id, lease)
    members = (await catalog.get_team(tx.session, row.team)).members if row.team else []
    if new.team or new.agent not in members:
        raise errors.Forbidden(
            f"task {new.parent_id} can delegate only to members of its team"
            + (f" ({', '.join(members)})" if members else " (it has none: it is not a team task)"),
            code="delegation_not_allowed",
        )
    if new.queue:
        raise errors.Forbidden(
            "a delegated task runs on its agent's own queue; leave out `queue`", code="delegation_not_allowed"
        )
    new.requested_by = row.requested_by


async def get_task(session: AsyncSession, task_id: str) -> Task:
    task = await session.get(Task, task_id)
    if task is None:
        raise errors.NotFound(f"task {task_id} not found", code="task_not_found")
    return task


def encode_cursor(task_id: str) -> str:
    return base64.urlsafe_b64encode(task_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Invalid("cursor is not one this server issued", code="invalid_cursor") from exc
    if len(raw) != 36:
        raise errors.Invalid("cursor is not one this server issued", code="invalid_cursor")
    return raw


def filter_tasks(
    stmt: _Select,
    *,
    status: Sequence[str] | None = None,
    agent: str | None = None,
    team: str | None = None,
    queue: str | None = None,
    type: str | None = None,
    source: str | None = None,
    q: str | None = None,
    failure: str | None = None,
) -> _Select:
    if status:
        bad = [s for s in status if s not in S.__members__]
        if bad:
            raise errors.Invalid(
                f"unknown status {bad[0]!r}; use one of {', '.join(S.__members__)}", code="invalid_status"
            )
        stmt = stmt.where(col(Task.status).in_(list(status)))
    if agent:
        stmt = stmt.where(col(Task.agent) == agent)
    if team:
        stmt = stmt.where(col(Task.team) == team)
    if queue:
        stmt = stmt.where(col(Task.queue) == queue)
    if type:
        if type not in ("agent", "team"):
            raise errors.Invalid("type must be 'agent' or 'team'", code="invalid_type")
        stmt = stmt.where(col(Task.team).is_(None) if type == "agent" else col(Task.team).is_not(None))
    if source:
        stmt = stmt.where(col(Task.source) == source)
    if q:
        stmt = stmt.where(sa.func.lower(col(Task.prompt)).contains(q.lower(), autoescape=True))
    if failure:  # kanban: failure classes (store/failure_filter.py)
        stmt = stmt.where(failure_clause(failure))
    return stmt


async def list_tasks(
    session: AsyncSession, *, limit: int = 50, cursor: str | None = None, **filters: Any
) -> tuple[list[Task], str | None]:
    """Newest first; returns (page, next_cursor)."""
    if not 1 <= limit <= 200:
        raise errors.Invalid("limit must be between 1 and 200", code="invalid_limit")
    stmt = filter_tasks(select(Task), **filters).order_by(col(Task.id).desc()).limit(limit + 1)
    if cursor:
        stmt = stmt.where(col(Task.id) < decode_cursor(cursor))
    rows = list((await session.execute(stmt)).scalars().all())
    nxt = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt


async def count_by_status(session: AsyncSession, **filters: Any) -> dict[str, int]:
    stmt = filter_tasks(select(Task.status, sa.func.count()).group_by(Task.status), **filters)
    counts = {s.value: 0 for s in S}
    for status, n in (await session.execute(stmt)).all():
        counts[status] = int(n)
    return counts


BOARD_COUNT_CAP = 1_000


async def count_by_status_capped(
    session: AsyncSession, *, cap: int | None = None, **filters: Any
) -> dict[str, tuple[int, bool]]:
    """Per status: (count, capped). A count stops at `cap` (capped=True: "cap or more").

    The board needs the size of each column, not the exact number of the million completed
    tasks: an exact GROUP BY reads every row (190-550 ms at 1M on PostgreSQL, 2 cores), while
    each capped count reads at most `cap` + 1 rows, all in one statement (~20 ms at 1M; a
    cap of 10,000 took ~140 ms, which is why it is 1,000).
    """
    cap = cap or BOARD_COUNT_CAP
    parts = [
        select(sa.literal(s.value).label("status"), sa.func.count().label("n")).select_from(
            filter_tasks(select(sa.literal(1).label("one")), status=[s.value], **filters)
            .limit(cap + 1)
            .subquery()
        )
        for s in S
    ]
    out = {s.value: (0, False) for s in S}
    for status, n in (await session.execute(sa.union_all(*parts))).all():
        out[status] = (min(int(n), cap), int(n) > cap)
    return out


async def cancel(tx: Tx, task_id: str, *, by: str | None = None) -> Task:
    """Cancel now if the task holds no worker; otherwise ask its worker to stop. Unfinished
    descendants (a team's delegations, linked by `parent_id`) are cancelled with it."""
    task = await get_task(tx.session, task_id)
    if task.status not in ACTIVE:
        raise errors.InvalidTransition(
            f"task {task_id} is {task.status}; only unfinished tasks can be cancelled"
        )
    # Set-based, not one call per child: a chain of delegations may be thousands deep.
    family = [*await _unfinished_descendants(tx, task_id), (task_id, task.status, task.cancel_requested)]
    event = {"reason": "cancelled", "by": by}
    for status in (S.pending, S.requires_input):
        ids = [tid for tid, st, _ in family if st == status.value]
        await transition_many(tx, ids, status, S.cancelled, values={"pending_input": None}, event=event)
    running = [tid for tid, st, asked in family if st == S.running.value and not asked]
    await _ask_to_stop(tx, running, f"cancel requested{f' by {by}' if by else ''}")
    await tx.session.refresh(task)
    return task


async def _unfinished_descendants(tx: Tx, task_id: str) -> list[tuple[str, str, bool]]:
    """(id, status, cancel_requested) of every unfinished task below `task_id`, reached
    through unfinished parents only, in one recursive query."""
    rows = (await tx.execute(tree_query(task_id))).all()
    return [(r.id, r.status, bool(r.cancel_requested)) for r in rows]


def tree_query(task_id: str) -> sa.Select[Any, Any, Any]:
    """_unfinished_descendants' query."""
    t, child = _tasks.alias("t"), _tasks.alias("c")
    cols = (t.c.id, t.c.status, t.c.cancel_requested)
    tree = sa.select(*cols).where(t.c.parent_id == task_id).cte("tree", recursive=True)
    # The status test is on the parent (the work table), not on `c`: with it on `c`, a
    # PostgreSQL without fresh statistics scanned every active task per level (65 s for a
    # 10,000-deep chain) instead of following the parent_id index (0.07 s).
    tree = tree.union(
        sa.select(child.c.id, child.c.status, child.c.cancel_requested)
        .join(tree, child.c.parent_id == tree.c.id)
        .where(tree.c.status.in_(ACTIVE))
    )
    return sa.select(tree.c.id, tree.c.status, tree.c.cancel_requested).where(tree.c.status.in_(ACTIVE))


async def _ask_to_stop(tx: Tx, task_ids: list[str], message: str) -> None:
    """Flag running tasks for cancellation (their workers learn it on the next call) and log
    it, a chunk of tasks per statement."""
    now = utcnow()
    for i in range(0, len(task_ids), 500):
        stmt = (
            sa.update(_tasks)
            .where(
                _tasks.c.id.in_(task_ids[i : i + 500]),
                _tasks.c.status == S.running.value,
                _tasks.c.cancel_requested == sa.false(),
            )
            .values(cancel_requested=True, last_seq=_tasks.c.last_seq + 1, updated_at=now)
            .returning(_tasks.c.id, _tasks.c.last_seq, _tasks.c.attempt)
        )
        for r in (await tx.execute(stmt)).all():
            await insert_rows(
                tx, r.id, r.last_seq, r.attempt, now, [("log", {"level": "warning", "message": message})]
            )
            tx.notify("board", r.id)


async def retry(
    tx: Tx, task_id: str, *, source: str = "api", requested_by: str | None = None, **limits: Any
) -> Task:
    """A new task with the same work, linked by `retry_of`."""
    old = await get_task(tx.session, task_id)
    if old.status not in TERMINAL:
        raise errors.InvalidTransition(
            f"task {task_id} is {old.status}; only completed, failed or cancelled tasks can be retried"
        )
    new = NewTask(
        prompt=old.prompt,
        agent=None if old.team else old.agent,
        team=old.team,
        queue=old.queue,
        parameters=old.parameters,
        source=source,
        requested_by=requested_by or old.requested_by,
        parent_id=old.parent_id,
        retry_of=old.id,
    )
    return await create_task(tx, new, **limits)


async def respond(
    tx: Tx,
    task_id: str,
    answer: str,
    *,
    by: str | None = None,
    max_chars: int = 100_000,
    parent_lease: Lease | None = None,
    key: str | None = None,
) -> Task:
    """Answer a Requires Input task; it goes back to pending for any worker to resume.

    `key`, when given, must be the pending question's (issued by `request_input`): an answer
    meant for an earlier question is refused rather than taken as this one's.

    With `parent_lease` the caller is a worker passing on its own answer to a child it
    delegated: it must hold the lease of the child's parent."""
    if len(answer) > max_chars:
        raise errors.Invalid(f"answer is longer than {max_chars} characters", code="answer_too_long")
    task = await get_task(tx.session, task_id)
    if parent_lease is not None:
        if not task.parent_id:
            raise errors.Forbidden(
                "a worker key answers only its own delegated tasks", code="insufficient_scope"
            )
        await fenced(tx, task.parent_id, parent_lease)
    if task.status != S.requires_input.value:
        raise errors.InvalidTransition(
            f"task {task_id} is {task.status}, not waiting for input", code="not_waiting_for_input"
        )
    pending = task.pending_input or {}
    issued = str(pending.get("key") or "answer")
    if key is not None and not hmac.compare_digest(key.encode(), issued.encode()):
        raise errors.Conflict(
            "that answer is for an earlier question; the task now asks something else "
            "(see its pending_input)",
            code="stale_question",
        )
    # The worker finds the answer under its own name for the question (`ref`).
    ref = str(pending.get("ref") or issued)
    inputs = {**(task.inputs or {}), ref: answer}
    return await transition(
        tx,
        task_id,
        S.pending,
        expect=frozenset({S.requires_input}),
        values={"inputs": inputs, "pending_input": None},
        extra_events=[("input_received", {"key": issued, "ref": ref, "answer": answer, "by": by})],
    )


async def list_artifacts(session: AsyncSession, task_id: str) -> list[Artifact]:
    await get_task(session, task_id)
    stmt = select(Artifact).where(Artifact.task_id == task_id).order_by(col(Artifact.name))
    return list((await session.execute(stmt)).scalars().all())


async def get_artifact(session: AsyncSession, task_id: str, name: str) -> Artifact:
    art = (
        (await session.execute(select(Artifact).where(Artifact.task_id == task_id, Artifact.name == name)))
        .scalars()
        .first()
    )
    if art is None:
        raise errors.NotFound(f"task {task_id} has no artifact {name!r}", code="artifact_not_found")
    return art
