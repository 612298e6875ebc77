"""bench/bench.py's throughput phase counts its own tasks only, on a real server and store."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bench import bench

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _claim_and_complete(base: str, n: int) -> None:
    async with httpx.AsyncClient(base_url=base + "/api/v1", timeout=30) as c:
        done = 0
        while done < n:
            r = await c.post(
                "/worker-queues/bench/claim",
                json={"worker_id": "t", "max_tasks": n - done, "wait_seconds": 5},
            )
            for item in r.json()["tasks"]:
                body = {"token": item["token"], "result": None}
                (await c.post(f"/tasks/{item['task']['id']}/complete", json=body)).raise_for_status()
                done += 1


async def test_throughput_waits_for_its_own_tasks_not_the_dispatch_phases(
    server_factory, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    base = server_factory(db_url).url
    await bench.setup(base)
    await bench.dispatch(base, 1)  # 21 tasks completed before the throughput phase
    assert bench.status_counts(db_url) == {"completed": 21}

    phase = asyncio.create_task(bench.throughput(base, db_url, 3, []))
    # No worker runs the 3 new tasks yet: the phase must not end on the earlier 21. Three
    # of its 0.5 s polls fit in this window; the old count ended it at the first.
    finished, _ = await asyncio.wait({phase}, timeout=1.5)
    assert not finished, f"the phase ended with its tasks still pending: {phase.result()}"

    await _claim_and_complete(base, 3)
    result = await asyncio.wait_for(phase, 30)
    assert result["tasks"] == 3
    assert bench.status_counts(db_url) == {"completed": 24}
