"""Agents, teams, worker queues and workers: the catalog the meta agent chooses from."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from kernel import errors
from kernel.argv import embedded
from store import fastrows, secrets
from store.db import Database, Tx
from store.models import Agent, Task, TaskStatus, Team, Worker, WorkerQueue, utcnow

__all__ = [
    "RUNTIMES",
    "check_queue",
    "create_agent",
    "create_queue",
    "create_team",
    "delete_agent",
    "delete_queue",
    "get_agent",
    "get_queue",
    "get_team",
    "list_agents",
    "list_queues",
    "list_teams",
    "list_workers",
    "queue_stats",
    "touch_worker",
    "update_agent",
    "upsert_agent",
]

RUNTIMES = ("llm", "command", "noop")
_Named = TypeVar("_Named", Agent, Team, WorkerQueue)
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# A worker that has not been heard from for this long is not "live".
WORKER_LIVE_SECONDS = 45.0


def check_slug(kind: str, name: str) -> None:
    if not SLUG.match(name):
        raise errors.Invalid(
            f"{kind} name {name!r} must be 1-64 lowercase letters, digits, '-' or '_' and start with a letter or digit",
            code="invalid_name",
        )


def _check_agent(agent: Agent) -> None:
    check_slug("agent", agent.name)
    if agent.runtime not in RUNTIMES:
        raise errors.Invalid(f"runtime must be one of {', '.join(RUNTIMES)}", code="invalid_runtime")
    if agent.runtime == "command" and not agent.command:
        raise errors.Invalid("a command agent needs a non-empty `command`", code="missing_command")
    if agent.command:
        # Refused when saved, not when a task runs: see kernel.argv.
        unsafe = embedded([str(a) for a in agent.command], [*(agent.parameters or {}), "prompt"])
        if unsafe:
            raise errors.Invalid(unsafe, code="unsafe_command")
    if agent.timeout_seconds <= 0:
        raise errors.Invalid("timeout_seconds must be positive", code="validation_error")


async def _lookup(session: AsyncSession, model: type[_Named], key: str, what: str) -> _Named:
    row = (
        (await session.execute(select(model).where(sa.or_(col(model.id) == key, col(model.name) == key))))
        .scalars()
        .first()
    )
    if row is None:
        raise errors.NotFound(f"{what} {key!r} not found", code=f"{what.replace(' ', '_')}_not_found")
    return row


async def get_agent(session: AsyncSession, key: str) -> Agent:
    """An agent by id or name."""
    return await _lookup(session, Agent, key, "agent")


async def agent_routing(session: AsyncSession, key: str) -> tuple[str, str | None]:
    """(name, default queue) of an agent by id or name: all a new task needs, read without
    loading the whole agent (task creation is a hot path)."""
    row = (
        await session.execute(
            sa.select(col(Agent.name), col(Agent.default_queue)).where(
                sa.or_(col(Agent.id) == key, col(Agent.name) == key)
            )
        )
    ).first()
    if row is None:
        raise errors.NotFound(f"agent {key!r} not found", code="agent_not_found")
    return row.name, row.default_queue


async def list_agents(session: AsyncSession, q: str | None = None) -> list[Agent]:
    stmt = select(Agent).order_by(col(Agent.name))
    if q:
        like = f"%{q.lower()}%"
        stmt = stmt.where(
            sa.or_(sa.func.lower(Agent.name).like(like), sa.func.lower(Agent.description).like(like))
        )
    return list((await session.execute(stmt)).scalars().all())


async def create_agent(tx: Tx, agent: Agent) -> Agent:
    _check_agent(agent)
    await secrets.check_names(
        tx.session, [*(agent.secrets or []), *(agent.requires or {}).get("secrets", [])]
    )
    if agent.default_queue:
        await get_queue(tx.session, agent.default_queue)
    tx.session.add(agent)
    try:
        async with tx.session.begin_nested():
            await tx.session.flush()
    except IntegrityError as exc:
        raise errors.Conflict(f"an agent named {agent.name!r} exists", code="name_taken") from exc
    return agent


async def update_agent(tx: Tx, key: str, changes: dict[str, Any]) -> Agent:
    agent = await get_agent(tx.session, key)
    for k, v in changes.items():
        setattr(agent, k, v)
    agent.updated_at = utcnow()
    _check_agent(agent)
    await secrets.check_names(
        tx.session, [*(agent.secrets or []), *(agent.requires or {}).get("secrets", [])]
    )
    if agent.default_queue:
        await get_queue(tx.session, agent.default_queue)
    try:
        async with tx.session.begin_nested():
            await tx.session.flush()
    except IntegrityError as exc:
        raise errors.Conflict(f"an agent named {agent.name!r} exists", code="name_taken") from exc
    return agent


async def upsert_agent(tx: Tx, data: dict[str, Any]) -> tuple[Agent, bool]:
    """Create or replace an agent by name (for `agents apply -f`). Returns (agent, created)."""
    name = data.get("name", "")
    existing = (await tx.session.execute(select(Agent).where(Agent.name == name))).scalars().first()
    if existing is None:
        return await create_agent(tx, Agent(**data)), True
    return await update_agent(tx, existing.id, data), False


async def _unfinished(tx: Tx, where: sa.ColumnElement[bool]) -> int:
    """How many pending, running or requires_input tasks match `where`."""
    unfinished = [TaskStatus.pending.value, TaskStatus.running.value, TaskStatus.requires_input.value]
    n = await tx.session.scalar(
        select(sa.func.count()).select_from(Task).where(where, col(Task.status).in_(unfinished))
    )
    return int(n or 0)


async def delete_agent(tx: Tx, key: str) -> None:
    agent = await get_agent(tx.session, key)
    active = await _unfinished(tx, col(Task.agent) == agent.name)
    if active:
        raise errors.Conflict(
            f"agent {agent.name!r} has {active} unfinished task(s); cancel them first", code="agent_in_use"
        )
    await tx.session.delete(agent)


async def get_team(session: AsyncSession, key: str) -> Team:
    return await _lookup(session, Team, key, "team")


async def list_teams(session: AsyncSession) -> list[Team]:
    return list((await session.execute(select(Team).order_by(col(Team.name)))).scalars().all())


async def create_team(tx: Tx, team: Team) -> Team:
    check_slug("team", team.name)
    for member in [team.coordinator, *team.members]:
        await get_agent(tx.session, member)
    if team.default_queue:
        await get_queue(tx.session, team.default_queue)
    tx.session.add(team)
    try:
        async with tx.session.begin_nested():
            await tx.session.flush()
    except IntegrityError as exc:
        raise errors.Conflict(f"a team named {team.name!r} exists", code="name_taken") from exc
    return team


async def get_queue(session: AsyncSession, key: str) -> WorkerQueue:
    return await _lookup(session, WorkerQueue, key, "queue")


_QUEUE_EXISTS = "SELECT 1 FROM worker_queues WHERE id = %s OR name = %s"


async def check_queue(db: Database, key: str) -> None:
    """NotFound unless a queue has this id or name. On PostgreSQL one read of our own
    (Database.fast_read): an idle worker's long-poll asks each time it parks, and an ORM
    session cost ~1 ms of the server's CPU for it."""
    if not db.fast_reads:
        async with db.read() as s:
            await get_queue(s, key)
        return
    (rows,) = await db.fast_read([(_QUEUE_EXISTS, (key, key))])
    if not rows:
        raise errors.NotFound(f"queue {key!r} not found", code="queue_not_found")


async def list_queues(session: AsyncSession) -> list[WorkerQueue]:
    return list((await session.execute(select(WorkerQueue).order_by(col(WorkerQueue.name)))).scalars().all())


async def create_queue(tx: Tx, queue: WorkerQueue, *, exist_ok: bool = False) -> WorkerQueue:
    check_slug("queue", queue.name)
    existing = (
        (await tx.session.execute(select(WorkerQueue).where(WorkerQueue.name == queue.name)))
        .scalars()
        .first()
    )
    if existing is not None:
        if exist_ok:
            return existing
        raise errors.Conflict(f"a queue named {queue.name!r} exists", code="name_taken")
    tx.session.add(queue)
    await tx.session.flush()
    return queue


async def delete_queue(tx: Tx, key: str) -> None:
    """Delete a queue nothing waits on: no unfinished task, no agent or team defaulting to it.

    Finished tasks keep the queue's name; workers still polling it get `queue_not_found`.
    """
    queue = await get_queue(tx.session, key)
    unfinished = await _unfinished(tx, col(Task.queue) == queue.name)
    if unfinished:
        raise errors.Conflict(
            f"queue {queue.name!r} has {unfinished} unfinished task(s) (pending, running or "
            "requires_input); cancel them or let them finish first",
            code="queue_in_use",
        )
    users = [
        f"agent {name!r}"
        for name in (await tx.session.execute(select(Agent.name).where(Agent.default_queue == queue.name)))
        .scalars()
        .all()
    ] + [
        f"team {name!r}"
        for name in (await tx.session.execute(select(Team.name).where(Team.default_queue == queue.name)))
        .scalars()
        .all()
    ]
    if users:
        raise errors.Conflict(
            f"queue {queue.name!r} is the default queue of {', '.join(users)}; change that first",
            code="queue_in_use",
        )
    await tx.session.delete(queue)


def live_since(now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(seconds=WORKER_LIVE_SECONDS)


async def queue_stats(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Per queue: live workers, their capacity, pending and running tasks."""
    stats: dict[str, dict[str, int]] = {}
    workers = await session.execute(
        select(Worker.queue, sa.func.count(), sa.func.sum(Worker.capacity))
        .where(col(Worker.last_heartbeat_at) >= live_since())
        .group_by(Worker.queue)
    )
    for queue, n, cap in workers.all():
        stats.setdefault(queue, {})["active_workers"] = int(n)
        stats[queue]["capacity"] = int(cap or 0)
    tasks = await session.execute(
        select(Task.queue, Task.status, sa.func.count())
        .where(col(Task.status).in_([TaskStatus.pending.value, TaskStatus.running.value]))
        .group_by(Task.queue, Task.status)
    )
    for queue, status, n in tasks.all():
        stats.setdefault(queue, {})[f"{status}_tasks"] = int(n)
    return stats


async def touch_worker(
    tx: Tx,
    worker_id: str,
    queue: str,
    info: dict[str, Any] | None = None,
    *,
    capabilities: dict[str, Any] | None = None,
) -> None:
    """Record that a worker is alive (claims and heartbeats call this), with what it has
    when it says (store/prereqs.py)."""
    now = utcnow()
    info = info or {}
    row = {  # a new worker's; a known one's keeps its name, host, version and start
        "id": worker_id,
        "queue": queue,
        "name": str(info.get("name", ""))[:200],
        "hostname": str(info.get("hostname", ""))[:200],
        "capacity": int(info.get("capacity", 1)),
        "running": int(info.get("running", 0)),
        "version": str(info.get("version", ""))[:50],
        "capabilities": capabilities,
        "started_at": now,
        "last_heartbeat_at": now,
    }
    # One upsert through the transaction's driver, not the ORM session: an exchange's claim
    # touches every few seconds per worker, and in its fast transaction asking for the
    # session ran the whole exchange again in a full one. (Two first claims at once: the
    # second updates the first's row.)
    changed = ["capabilities"] if capabilities is not None else []
    changed += [k for k in ("capacity", "running") if k in info]
    await fastrows.upsert_worker(tx, row, ["last_heartbeat_at", "queue", *changed])


async def list_workers(
    session: AsyncSession, queue: str | None = None, live_only: bool = True
) -> list[Worker]:
    stmt = select(Worker).order_by(col(Worker.queue), col(Worker.id))
    if queue:
        stmt = stmt.where(Worker.queue == queue)
    if live_only:
        stmt = stmt.where(col(Worker.last_heartbeat_at) >= live_since())
    return list((await session.execute(stmt)).scalars().all())


async def forget_worker(tx: Tx, worker_id: str) -> None:
    """A worker that shut down cleanly leaves the live list at once."""
    worker = await tx.session.get(Worker, worker_id)
    if worker is not None:
        await tx.session.delete(worker)
