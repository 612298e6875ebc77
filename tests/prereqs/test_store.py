"""Claims and prerequisites in the store, on SQLite and PostgreSQL (store/prereqs.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kernel import errors
from store import fastpath, fastrows, prereqs, secrets, tasks
from store.catalog import create_agent, create_queue
from store.db import Database
from store.models import Agent, Task, WorkerQueue

CAN = {"digest": "can", "bins": ["kubectl", "sh"], "env": ["KUBECONFIG"], "mcp": [], "environment": None}
CANNOT = {"digest": "cannot", "bins": ["sh"], "env": [], "mcp": [], "environment": None}


async def seed(db: Database) -> None:
    async with db.tx() as tx:
        await create_queue(tx, WorkerQueue(name="prod", environment="prod"))
        await create_agent(tx, Agent(name="echo", runtime="noop", default_queue="prod"))
        await create_agent(
            tx,
            Agent(
                name="deployer",
                runtime="noop",
                default_queue="prod",
                requires={"bins": ["kubectl"], "env": ["KUBECONFIG"], "environment": "prod"},
            ),
        )


async def new(db: Database, agent: str) -> Task:
    async with db.tx() as tx:
        return await tasks.create_task(tx, tasks.NewTask(prompt="go", agent=agent))


async def claim(db: Database, worker: str, caps: dict[str, Any] | None, *, limit: int = 10) -> list[str]:
    async with db.tx() as tx:
        got = await tasks.claim_tasks(
            tx, "prod", worker, limit, 30, capabilities=caps, digest=caps["digest"] if caps else None
        )
    return [c.task.id for c in got]


async def row(db: Database, task_id: str) -> Task:
    async with db.read() as s:
        return await tasks.get_task(s, task_id)


async def test_a_task_records_its_agents_needs_and_a_plain_one_none(db: Database) -> None:
    await seed(db)
    plain, needy = await new(db, "echo"), await new(db, "deployer")
    assert plain.needs is None
    assert prereqs.parse(needy.needs) == ["bin:kubectl", "env:KUBECONFIG", "environment:prod"]


async def test_a_worker_lacking_a_prerequisite_skips_the_task_and_says_why(db: Database) -> None:
    await seed(db)
    needy = await new(db, "deployer")
    plain = await new(db, "echo")
    assert await claim(db, "w-small", CANNOT) == [plain.id]
    waiting = await row(db, needy.id)
    assert waiting.status == "pending"
    assert waiting.waiting_for == "waiting: no worker on `prod` has `kubectl`, `KUBECONFIG`"
    # A capable worker takes it at once, and it waits for nothing any more.
    assert await claim(db, "w-big", CAN) == [needy.id]
    taken = await row(db, needy.id)
    assert taken.status == "running" and taken.waiting_for is None and taken.worker_id == "w-big"


async def test_the_queues_environment_stands_in_for_a_worker_without_a_label(db: Database) -> None:
    await seed(db)
    needy = await new(db, "deployer")
    labelled = {**CAN, "digest": "staging", "environment": "staging"}
    assert await claim(db, "w-staging", labelled) == []
    assert (await row(db, needy.id)).waiting_for == "waiting: no worker on `prod` has environment `prod`"
    assert await claim(db, "w-prod", CAN) == [needy.id]  # no label: the queue's `prod`


async def test_a_worker_that_reports_nothing_claims_anything_as_before(db: Database) -> None:
    await seed(db)
    needy = await new(db, "deployer")
    assert await claim(db, "w-old", None) == [needy.id]


async def test_a_busy_capable_worker_means_no_waiting_text(db: Database) -> None:
    await seed(db)
    await new(db, "deployer")
    assert len(await claim(db, "w-big", CAN, limit=1)) == 1  # live, and now busy
    second = await new(db, "deployer")
    assert await claim(db, "w-small", CANNOT) == []
    assert (await row(db, second.id)).waiting_for is None  # w-big can run it when free


async def test_the_digest_alone_names_what_the_worker_sent_before(db: Database) -> None:
    await seed(db)
    assert await claim(db, "w-big", CAN) == []
    needy = await new(db, "deployer")
    async with db.tx() as tx:  # digest only, as a worker sends between changes
        got = await tasks.claim_tasks(tx, "prod", "w-big", 5, 30, digest="can")
    assert [c.task.id for c in got] == [needy.id]
    prereqs._states.clear()  # pyright: ignore[reportPrivateUsage]  (another replica: the row is read)
    again = await new(db, "deployer")
    async with db.tx() as tx:
        got = await tasks.claim_tasks(tx, "prod", "w-big", 5, 30, digest="can")
    assert [c.task.id for c in got] == [again.id]
    last = await new(db, "deployer")
    async with db.tx() as tx:  # a digest it never sent: it has nothing, until it sends them
        assert await tasks.claim_tasks(tx, "prod", "w-big", 5, 30, digest="other") == []
    assert (await row(db, last.id)).status == "pending"


async def test_an_env_secret_needs_its_variable_and_a_stored_one_nothing(db: Database) -> None:
    await seed(db)
    async with db.tx() as tx:
        await secrets.set_secret(tx, "KUBE_TOKEN", env="WORKER_KUBE_TOKEN")
        await create_agent(
            tx, Agent(name="kube", runtime="noop", default_queue="prod", requires={"secrets": ["KUBE_TOKEN"]})
        )
    task = await new(db, "kube")
    assert prereqs.parse(task.needs) == ["env:WORKER_KUBE_TOKEN"]
    with pytest.raises(errors.Conflict) as in_use:  # a requirement is a use: not deleted
        async with db.tx() as tx:
            await secrets.delete_secret(tx, "KUBE_TOKEN")
    assert in_use.value.code == "secret_in_use" and "kube" in in_use.value.detail


async def test_a_queue_without_needs_is_looked_at_once_then_claims_in_one_statement(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(db)
    asked: list[Any] = []
    real = fastpath.send_claim

    async def spy(*args: Any, **kw: Any) -> Any:
        asked.append(args[-1])  # the claim's `needs`
        return await real(*args, **kw)

    monkeypatch.setattr(fastpath, "send_claim", spy)
    looks: list[str] = []
    real_look = fastrows.needs_on_queue

    async def look(tx: Any, queue: str, statuses: Any) -> Any:
        looks.append(queue)
        return await real_look(tx, queue, statuses)

    monkeypatch.setattr(fastrows, "needs_on_queue", look)
    await claim(db, "w-small", CANNOT)  # the first look finds nothing: remembered
    await claim(db, "w-small", CANNOT)
    assert looks == ["prod"]
    # SQLite: today's statement; PostgreSQL: `needs IS NULL` too (another replica's new task).
    assert asked == [None, None] if db.is_sqlite else asked == [(), ()]
    # A new task with needs moves the queue's topic: the next claim looks again.
    needy = await new(db, "deployer")
    await claim(db, "w-big", CAN)
    assert looks == ["prod", "prod"]
    assert (await row(db, needy.id)).status == "running"
