"""worker.progress.ProgressPipe: the running tasks' event batches leave together."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sdk.client import ApiError
from sdk.exchange import ProgressOut
from sdk.schemas import EventsOut
from worker.progress import ProgressPipe


class Api:
    """The two worker calls the pipe makes; `gate` holds each merged call until released."""

    def __init__(self, *, merged: bool = True) -> None:
        self.merged = merged
        self.calls: list[tuple[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()

    async def post_progress(self, queue: str, items: list[dict[str, Any]]) -> ProgressOut:
        self.calls.append(("merged", [i["id"] for i in items]))
        self.arrived.set()
        if not self.merged:
            raise ApiError(404, "not_found", "Not Found")
        await self.gate.wait()
        out: list[dict[str, Any]] = []
        for i in items:
            if i["token"] == "stale":
                out.append(
                    {"id": i["id"], "problem": {"status": 409, "code": "stale_lease", "detail": "gone"}}
                )
            else:
                out.append({"id": i["id"], "last_seq": len(i["events"]), "cancel_requested": i["id"] == "c"})
        return ProgressOut.model_validate({"items": out})

    async def post_events(
        self, task_id: str, token: str, events: list[dict[str, Any]], phase: str | None = None
    ) -> EventsOut:
        self.calls.append(("alone", task_id))
        return EventsOut(last_seq=len(events), cancel_requested=False)


EV = [{"kind": "log", "data": {"line": "x"}}]


async def test_posts_that_arrive_during_a_call_leave_together_in_the_next() -> None:
    api = Api()
    api.gate.clear()
    pipe = ProgressPipe(api, "q")  # type: ignore[arg-type]
    first = asyncio.create_task(pipe.post("a", "t", EV))
    await asyncio.wait_for(api.arrived.wait(), 5)  # a's call is in flight
    others = [asyncio.create_task(pipe.post(i, "t", EV * 2, phase="executing")) for i in ("b", "c", "d")]
    await asyncio.sleep(0)  # they queue behind the call in flight
    api.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, *others), 5)
    assert api.calls == [("merged", ["a"]), ("merged", ["b", "c", "d"])]
    assert [a.last_seq for a in answers] == [1, 2, 2, 2]
    assert [a.cancel_requested for a in answers] == [False, False, True, False]


async def test_a_refused_batch_fails_its_task_only() -> None:
    api = Api()
    api.gate.clear()
    pipe = ProgressPipe(api, "q")  # type: ignore[arg-type]
    first = asyncio.create_task(pipe.post("a", "t", EV))
    await asyncio.wait_for(api.arrived.wait(), 5)
    stale = asyncio.create_task(pipe.post("s", "stale", EV))
    fine = asyncio.create_task(pipe.post("b", "t", EV))
    await asyncio.sleep(0)
    api.gate.set()
    assert (await asyncio.wait_for(first, 5)).last_seq == 1
    with pytest.raises(ApiError) as err:
        await asyncio.wait_for(stale, 5)
    assert (err.value.status, err.value.code) == (409, "stale_lease")
    assert (await asyncio.wait_for(fine, 5)).last_seq == 1


async def test_an_older_control_plane_gets_each_task_on_its_own_route() -> None:
    api = Api(merged=False)
    pipe = ProgressPipe(api, "q")  # type: ignore[arg-type]
    assert (await asyncio.wait_for(pipe.post("a", "t", EV), 5)).last_seq == 1
    assert (await asyncio.wait_for(pipe.post("b", "t", EV * 3), 5)).last_seq == 3
    assert api.calls == [("merged", ["a"]), ("alone", "a"), ("alone", "b")]  # asked once, then remembered
    assert not pipe.merged
