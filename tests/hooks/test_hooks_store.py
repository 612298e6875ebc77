"""store/hooks.py on SQLite and PostgreSQL: concurrent twins of one delivery make one task."""

from __future__ import annotations

import asyncio

import pytest

from kernel import errors
from store import catalog, hooks
from store.db import Database
from store.hook_models import Hook
from store.models import Agent, Task, WorkerQueue


async def _hook(db: Database) -> Hook:
    async with db.tx() as tx:
        await catalog.create_queue(tx, WorkerQueue(name="q1"))
        await catalog.create_agent(tx, Agent(name="echo", runtime="noop", default_queue="q1"))
        hook, _ = await hooks.create_hook(tx, hooks.HookSpec(name="h", agent="echo", prompt_template="p"))
    return hook


async def test_concurrent_twins_of_a_delivery_make_one_task(db: Database) -> None:
    hook = await _hook(db)
    verified = hooks.Verified("same-id", None)

    async def one() -> str:
        try:
            async with db.tx() as tx:
                task, _ = await hooks.deliver(tx, hook, verified, "p", {}, max_prompt_chars=1000)
            return task.id
        except hooks.Duplicate:
            return "duplicate"

    results = await asyncio.gather(*(one() for _ in range(5)))

    assert results.count("duplicate") == 4
    async with db.read() as s:
        tasks = (await s.execute(Task.__table__.select())).all()
        seen = await hooks.find_delivery(s, hook, verified)
    assert len(tasks) == 1 and seen is not None and seen.task_id == tasks[0].id


def test_signatures_are_checked_in_both_schemes() -> None:
    hook = Hook(name="h", agent="a", prompt_template="p", scheme="generic", secret="s3cret")
    body = b'{"a": 1}'
    header = hooks.sign_generic("s3cret", body, 1_000_000)
    ok = hooks.verify(hook, {"x-signature": header, "x-request-id": "r1"}, body, 1_000_100)
    assert ok.delivery_id == "r1" and ok.signature
    # Two v1 values (a sender rotating its secret): either may match.
    rotated = header.replace("v1=", "v1=00,v1=")
    assert hooks.verify(hook, {"x-signature": rotated}, body, 1_000_000).delivery_id.startswith("sig:")
    with pytest.raises(errors.Unauthorized) as stale:
        hooks.verify(hook, {"x-signature": header}, body, 1_000_301)
    assert stale.value.code == "stale_timestamp"
    for bad in ("", "t=1", "v1=abc", "t=x,v1=abc", header + "0"):
        with pytest.raises(errors.Unauthorized):
            hooks.verify(hook, {"x-signature": bad}, body, 1_000_000)
