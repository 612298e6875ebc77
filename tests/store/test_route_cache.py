"""An agent's route (default queue, requires) cached per process on PostgreSQL's hot path
(store.fastpath.agent_routing): a creation takes it without reading the agent, and its
insert checks it in the same statement. Whatever changed the agent meanwhile (another
replica, or this one), a task is routed by the agent as it is when the task is stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from kernel import errors
from store import audit, catalog, fastpath, tasks
from store.db import Database, Tx
from store.handoff import create_handing_off, handoffs
from store.models import Agent, Task, WorkerQueue

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

ACTOR = audit.Actor("tester", "person")


async def _setup(db: Database) -> None:
    async with db.tx() as tx:
        for q in ("q", "q2"):
            await catalog.create_queue(tx, WorkerQueue(name=q))
        await catalog.create_agent(tx, Agent(name="a", runtime="noop", default_queue="q"))


def _creating(agent: str = "a") -> Any:
    async def create(tx: Tx) -> Task:
        """What `POST /tasks` does in its transaction."""
        task = await tasks.create_task(tx, tasks.NewTask(prompt="p", agent=agent))
        await audit.record(tx, ACTOR, "task.create", "task", task.id, {"agent": agent})
        return task

    return create


async def _stored(db: Database) -> tuple[int, int]:
    """(tasks, audit rows of creations) in the store."""
    async with db.read() as s:
        n_tasks = (await s.execute(sa.text("SELECT count(*) FROM tasks"))).scalar_one()
        n_audit = (
            await s.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'task.create'"))
        ).scalar_one()
    return n_tasks, n_audit


async def _edit(other: Database, changes: dict[str, Any]) -> None:
    """The agent edited through `other` (another replica: this process's cache never hears)."""
    async with other.tx() as tx:
        await catalog.update_agent(tx, "a", changes)


async def test_a_cached_route_is_used_until_the_agent_changes_then_read_again(db: Database) -> None:
    await _setup(db)
    other = Database(str(db.engine.url.render_as_string(hide_password=False)))
    try:
        first = await db.fast_or_full(_creating())
        assert first.queue == "q" and fastpath.routes(db)["a"][:2] == ("a", "q")
        assert (await db.fast_or_full(_creating())).queue == "q"
        assert db.fast_fallbacks == {}  # from the cache, checked, on the fast path

        await _edit(other, {"default_queue": "q2"})
        moved = await db.fast_or_full(_creating())
        # The check failed and rolled the fast attempt back; the full one read the agent.
        assert moved.queue == "q2" and sum(db.fast_fallbacks.values()) == 1
        assert "a" not in fastpath.routes(db)  # forgotten
        assert (await db.fast_or_full(_creating())).queue == "q2"
        assert sum(db.fast_fallbacks.values()) == 1  # fast again: read, and cached again
        assert fastpath.routes(db)["a"][:2] == ("a", "q2")
        assert await _stored(db) == (4, 4)  # the failed attempt left nothing behind

        await _edit(other, {"requires": {"bins": ["git"]}})
        needing = await db.fast_or_full(_creating())
        assert needing.needs is not None and "git" in needing.needs
        assert sum(db.fast_fallbacks.values()) == 2
    finally:
        await other.dispose()


async def test_a_failed_check_among_several_creations_forgets_every_route(db: Database) -> None:
    """Which agent's check failed the error does not say: all cached routes go, so none
    stays stale (each creation for it would fail fast and rerun, for ever)."""
    await _setup(db)
    async with db.tx() as tx:
        await catalog.create_agent(tx, Agent(name="b", runtime="noop", default_queue="q"))
    for agent in ("a", "b"):
        await db.fast_or_full(_creating(agent))
    assert set(fastpath.routes(db)) == {"a", "b"}
    other = Database(str(db.engine.url.render_as_string(hide_password=False)))
    try:
        await _edit(other, {"default_queue": "q2"})  # a's
    finally:
        await other.dispose()

    async def both(tx: Tx) -> tuple[Task, Task]:
        return await _creating("a")(tx), await _creating("b")(tx)

    moved, kept = await db.fast_or_full(both)
    assert (moved.queue, kept.queue) == ("q2", "q") and sum(db.fast_fallbacks.values()) == 1
    assert fastpath.routes(db) == {}
    for _ in range(2):  # a read again and cached again: fast from now on
        assert (await db.fast_or_full(_creating("a"))).queue == "q2"
    assert sum(db.fast_fallbacks.values()) == 1


async def test_a_deleted_agent_is_not_found_though_its_route_was_cached(db: Database) -> None:
    await _setup(db)
    await db.fast_or_full(_creating())
    assert "a" in fastpath.routes(db)
    async with db.tx() as tx:
        await tx.session.execute(sa.text("UPDATE tasks SET status = 'completed'"))
        await catalog.delete_agent(tx, "a")
    with pytest.raises(errors.NotFound) as raised:
        await db.fast_or_full(_creating())
    assert raised.value.code == "agent_not_found"
    assert await _stored(db) == (1, 1)


async def test_an_agent_asked_for_by_id_is_read_each_time(db: Database) -> None:
    """Only names are cached: an id could also be some other agent's name."""
    await _setup(db)
    async with db.read() as s:
        agent = await catalog.get_agent(s, "a")
    task = await db.fast_or_full(_creating(agent.id))
    assert task.agent == "a" and task.queue == "q"
    assert agent.id not in fastpath.routes(db) and "a" not in fastpath.routes(db)


async def test_a_hand_off_whose_cached_route_failed_claims_once_in_the_rerun(db: Database) -> None:
    """The check fails at the parked claim's statement (which sends the held insert first):
    the whole transaction, claim included, runs again in a full one, with the same claim."""
    await _setup(db)
    await db.fast_or_full(_creating())  # the route cached
    other = Database(str(db.engine.url.render_as_string(hide_password=False)))
    try:
        await _edit(other, {"requires": {"env": ["HOME"]}})
    finally:
        await other.dispose()
    async with db.tx() as tx:
        await tx.session.execute(sa.text("UPDATE tasks SET status = 'completed'"))

    async def claim(tx: Tx) -> Callable[[], Awaitable[list[tasks.Claimed]]]:
        return await tasks.send_claim_tasks(tx, "q", "w1", 1, 60, {}, touch=False)

    parked = handoffs(db).park("q", claim)
    parked.outcome.add_done_callback(lambda _: handoffs(db).leave(parked))
    task = await create_handing_off(db, _creating())
    assert task.needs is not None and sum(db.fast_fallbacks.values()) == 1
    claimed = parked.outcome.result()
    assert claimed is not None and [c.task.id for c in claimed] == [task.id]
    async with db.read() as s:
        stored = await tasks.get_task(s, task.id)
    assert (stored.status, stored.worker_id, stored.attempt) == ("running", "w1", 1)
    assert await _stored(db) == (2, 2)
