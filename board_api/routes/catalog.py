"""Agents, teams, worker queues and workers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from board_api import wire
from board_api.auditing import Who, change, task_details
from board_api.deps import Admin, DbDep, Operator, SettingsDep, Viewer
from kernel import errors
from kernel.settings import Settings
from sdk.prereqs import AgentCheckOut, QueueFit, Requires
from sdk.schemas import (
    AgentIn,
    AgentList,
    AgentOut,
    AgentPatch,
    ExecuteBody,
    ExecuteOut,
    QueueIn,
    QueueList,
    QueueOut,
    TeamIn,
    TeamList,
    TeamOut,
    WorkerList,
)
from store import catalog, prereqs, tasks
from store.audit import Actor, record
from store.db import Database, Tx
from store.handoff import create_handing_off
from store.models import Agent, Task, Team, WorkerQueue, utcnow

router = APIRouter()


def _agent_fields(body: AgentIn | AgentPatch, *, partial: bool) -> dict[str, Any]:
    data = body.model_dump(exclude_unset=partial)
    if body.policy is not None and "policy" in data:
        data["policy"] = body.policy.model_dump(exclude_none=True, exclude_defaults=True)
    if body.provider is not None and "provider" in data:
        data["provider"] = body.provider.model_dump(exclude_none=True)
    if body.requires is not None and "requires" in data:
        data["requires"] = body.requires.model_dump(exclude_defaults=True)  # {}: requires nothing
    if "parameters" in data and data["parameters"] is not None:
        data["parameters"] = {k: dict(v) for k, v in data["parameters"].items()}
    return data


@router.get("/agents", response_model=AgentList)
async def list_agents(db: DbDep, _: Viewer, q: str | None = None) -> AgentList:
    """List agents, optionally filtered by text in name or description."""
    async with db.read() as s:
        return AgentList(items=[wire.agent_out(a) for a in await catalog.list_agents(s, q)])


@router.post("/agents", response_model=AgentOut, status_code=201)
async def create_agent(body: AgentIn, db: DbDep, _: Operator, who: Who) -> AgentOut:
    """Create an agent."""
    fields = _agent_fields(body, partial=False)
    async with db.tx() as tx:
        agent = await catalog.create_agent(tx, Agent(**fields))
        await record(tx, who, "agent.create", "agent", agent.name, fields)
    return wire.agent_out(agent)


@router.put("/agents/{name}", response_model=AgentOut)
async def apply_agent(
    name: str, body: AgentIn, db: DbDep, _: Operator, who: Who, response: Response
) -> AgentOut:
    """Create or replace the agent named in the path (declarative apply)."""
    if body.name != name:
        raise errors.Invalid(f"body name {body.name!r} differs from the path {name!r}", code="name_mismatch")
    fields = _agent_fields(body, partial=False)
    async with db.tx() as tx:
        agent, created = await catalog.upsert_agent(tx, fields)
        await record(tx, who, "agent.create" if created else "agent.apply", "agent", agent.name, fields)
    response.status_code = 201 if created else 200
    return wire.agent_out(agent)


@router.get("/agents/{key}", response_model=AgentOut)
async def get_agent(key: str, db: DbDep, _: Viewer) -> AgentOut:
    """One agent by id or name."""
    async with db.read() as s:
        return wire.agent_out(await catalog.get_agent(s, key))


@router.patch("/agents/{key}", response_model=AgentOut)
async def update_agent(key: str, body: AgentPatch, db: DbDep, _: Operator, who: Who) -> AgentOut:
    """Change some fields of an agent."""
    fields = _agent_fields(body, partial=True)
    async with db.tx() as tx:
        old = await catalog.get_agent(tx.session, key)
        diff = change(old, fields)  # read before the update changes the same object
        agent = await catalog.update_agent(tx, key, fields)
        await record(tx, who, "agent.update", "agent", agent.name, diff)
    return wire.agent_out(agent)


@router.delete("/agents/{key}", status_code=204)
async def delete_agent(key: str, db: DbDep, _: Operator, who: Who) -> Response:
    """Delete an agent with no unfinished tasks."""
    async with db.tx() as tx:
        await catalog.delete_agent(tx, key)
        await record(tx, who, "agent.delete", "agent", key)
    return Response(status_code=204)


async def _execute(
    db: Database,
    settings: Settings,
    body: ExecuteBody,
    who: Actor,
    *,
    agent: str | None = None,
    team: str | None = None,
) -> ExecuteOut:
    new = tasks.NewTask(
        prompt=body.prompt,
        agent=agent,
        team=team,
        queue=body.worker_queue_id,
        parameters=body.parameters,
        source=body.source,
        requested_by=body.requested_by,
    )

    async def work(tx: Tx) -> Task:
        task = await tasks.create_task(
            tx, new, max_prompt_chars=settings.max_prompt_chars, max_attempts=settings.max_attempts
        )
        await record(tx, who.via(task.source), "task.create", "task", task.id, task_details(task))
        return task

    # As POST /tasks: a worker's claim parked on the queue is answered from this transaction.
    task = await create_handing_off(db, work)
    return ExecuteOut(execution_id=task.id, status=task.status, task=wire.task_out(task))


@router.post("/agents/{key}/execute", response_model=ExecuteOut, status_code=201)
async def execute_agent(
    key: str, body: ExecuteBody, db: DbDep, settings: SettingsDep, _: Operator, who: Who
) -> ExecuteOut:
    """Start an execution of an agent (Kubiya-compatible)."""
    return await _execute(db, settings, body, who, agent=key)


@router.get("/teams", response_model=TeamList)
async def list_teams(db: DbDep, _: Viewer) -> TeamList:
    """List teams."""
    async with db.read() as s:
        return TeamList(
            items=[TeamOut.model_validate(t, from_attributes=True) for t in await catalog.list_teams(s)]
        )


@router.post("/teams", response_model=TeamOut, status_code=201)
async def create_team(body: TeamIn, db: DbDep, _: Operator, who: Who) -> TeamOut:
    """Create a team of agents with a coordinator."""
    async with db.tx() as tx:
        team = await catalog.create_team(tx, Team(**body.model_dump()))
        await record(tx, who, "team.create", "team", team.name, body.model_dump())
    return TeamOut.model_validate(team, from_attributes=True)


@router.get("/teams/{key}", response_model=TeamOut)
async def get_team(key: str, db: DbDep, _: Viewer) -> TeamOut:
    """One team by id or name."""
    async with db.read() as s:
        return TeamOut.model_validate(await catalog.get_team(s, key), from_attributes=True)


@router.post("/teams/{key}/execute", response_model=ExecuteOut, status_code=201)
async def execute_team(
    key: str, body: ExecuteBody, db: DbDep, settings: SettingsDep, _: Operator, who: Who
) -> ExecuteOut:
    """Start an execution of a team (runs its coordinator)."""
    return await _execute(db, settings, body, who, team=key)


def _queue_out(
    q: WorkerQueue, stats: dict[str, dict[str, int]], fits: list[prereqs.Fit] | None = None
) -> QueueOut:
    st = stats.get(q.name, {})
    return QueueOut(
        **q.model_dump(),
        active_workers=st.get("active_workers", 0),
        capacity=st.get("capacity", 0),
        pending_tasks=st.get("pending_tasks", 0),
        running_tasks=st.get("running_tasks", 0),
        prerequisites=[_fit_out(f) for f in fits or [] if f.queue == q.name],
    )


def _fit_out(f: prereqs.Fit) -> QueueFit:
    return QueueFit(agent=f.agent, live_workers=f.live_workers, workers=f.workers, missing=f.missing)


@router.get("/worker-queues", response_model=QueueList)
async def list_queues(db: DbDep, _: Viewer) -> QueueList:
    """List worker queues with their live workers, queue depth, and which agents that
    require something their live workers can run (`prerequisites`)."""
    async with db.read() as s:
        stats = await catalog.queue_stats(s)
        fits = await prereqs.fits(s, await catalog.list_agents(s), utcnow())
        return QueueList(items=[_queue_out(q, stats, fits) for q in await catalog.list_queues(s)])


@router.get("/agents/{key}/check", response_model=AgentCheckOut)
async def check_agent(key: str, db: DbDep, _: Viewer) -> AgentCheckOut:
    """Whether live workers can run the agent: per queue with live workers, the workers
    that can, or what the closest one lacks."""
    async with db.read() as s:
        agent = await catalog.get_agent(s, key)
        needs = prereqs.parse(await prereqs.needs_for(s, agent.requires))
        fits = await prereqs.fits(s, [agent], utcnow(), everyone=True)
    queues = {f.queue: _fit_out(f) for f in fits}
    return AgentCheckOut(
        agent=agent.name,
        requires=Requires.model_validate(agent.requires or {}),
        needs=needs,
        queues=queues,
        runnable=any(f.workers for f in fits),
    )


@router.post("/worker-queues", response_model=QueueOut, status_code=201)
async def create_queue(body: QueueIn, db: DbDep, _: Admin, who: Who) -> QueueOut:
    """Create a worker queue."""
    async with db.tx() as tx:
        q = await catalog.create_queue(tx, WorkerQueue(**body.model_dump()))
        await record(tx, who, "queue.create", "queue", q.name, body.model_dump())
    return _queue_out(q, {})


@router.get("/worker-queues/{key}", response_model=QueueOut)
async def get_queue(key: str, db: DbDep, _: Viewer) -> QueueOut:
    """One worker queue by id or name."""
    async with db.read() as s:
        q = await catalog.get_queue(s, key)
        fits = await prereqs.fits(s, await catalog.list_agents(s), utcnow())
        return _queue_out(q, await catalog.queue_stats(s), fits)


@router.delete("/worker-queues/{key}", status_code=204)
async def delete_queue(key: str, db: DbDep, _: Admin, who: Who) -> Response:
    """Delete a worker queue; 409 `queue_in_use` while tasks on it are unfinished."""
    async with db.tx() as tx:
        await catalog.delete_queue(tx, key)
        await record(tx, who, "queue.delete", "queue", key)
    return Response(status_code=204)


@router.get("/workers", response_model=WorkerList)
async def list_workers(db: DbDep, _: Viewer, queue: str | None = None) -> WorkerList:
    """Live workers (heard from in the last 45 s)."""
    async with db.read() as s:
        return WorkerList(items=[wire.worker_out(w) for w in await catalog.list_workers(s, queue)])
