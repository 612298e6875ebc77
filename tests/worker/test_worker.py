"""The worker loop against a fake control plane behind an httpx transport (the process edge).

The fake speaks docs/protocol.md for one queue; tests inject outages and 409s into it. End
to end runs against the real server live in test_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdk.client import ApiError, AsyncControlPlaneClient
from sdk.schemas import AgentOut
from worker.main import Worker
from worker.runtime import Outcome, TaskContext, TaskFailed, register_runtime

FINAL = ("complete", "fail", "request-input", "release")
NOW = "2026-01-02T03:04:05Z"


def task_out(task_id: str, **fields: Any) -> dict[str, Any]:
    """A task as the API serves it (`TaskOut`)."""
    none = ("agent", "team", "requested_by", "parent_id", "retry_of", "phase", "worker_id", "lease_expires_at",
            "result", "error", "pending_input", "started_at", "finished_at", "duration_seconds")  # fmt: skip
    base = dict.fromkeys(none) | {
        "id": task_id, "queue": "q1", "prompt": "p", "parameters": {}, "source": "api", "status": "running",
        "attempt": 1, "max_attempts": 3, "cancel_requested": False, "inputs": {}, "usage": {}, "last_seq": 0,
        "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip
    return base | fields


def agent_out(runtime: str, **fields: Any) -> dict[str, Any]:
    """An agent as the API serves it (`AgentOut`); the probe runtimes' knobs ride in `policy`
    (the wire model keeps only its own fields, and only `llm` agents enforce a policy)."""
    knobs = {k: fields.pop(k) for k in list(fields) if k not in AgentOut.model_fields}
    base = {"id": "a1", "name": "a", "description": "", "runtime": runtime, "model": None, "instructions": None,
            "command": None, "parameters": {}, "tools": [], "mcp_servers": [], "policy": knobs, "provider": {},
            "default_queue": None, "timeout_seconds": 600, "risky": False, "created_at": NOW, "updated_at": NOW}  # fmt: skip
    return base | fields


class FakePlane:
    """Hands out queued tasks to claims and records every call."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.calls: list[tuple[str, str, Any]] = []
        self.reports: dict[str, asyncio.Future[tuple[str, Any]]] = {}
        self.cancel: set[str] = set()
        self.cancel_on_events: set[str] = set()
        self.lost: set[str] = set()
        self.faults: dict[str, list[httpx.Response | Exception]] = {}
        self.bye = asyncio.Event()
        self.changed = asyncio.Condition()

    async def until(self, check: Any) -> None:
        """Wait (bounded) until `check()` holds; re-checked after every call the plane gets."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(check), 10)

    def add(self, task_id: str, runtime: str, prompt: str = "p", **agent: Any) -> None:
        task = task_out(task_id, prompt=prompt, parameters=agent.pop("params", {}))
        item = {
            "task": task,
            "agent": agent_out(runtime, **agent),
            "token": "tok-1",  # the claim's lease token (a string)
            "lease_seconds": 30,
        }
        self.queue.put_nowait(item)
        self.reports[task_id] = asyncio.get_running_loop().create_future()

    async def report(self, task_id: str) -> tuple[str, Any]:
        return await asyncio.wait_for(asyncio.shield(self.reports[task_id]), 10)

    def task_calls(self, task_id: str) -> list[str]:
        return [p.rsplit("/", 1)[-1] for _, p, _ in self.calls if p.startswith(f"/tasks/{task_id}/")]

    def claims(self) -> list[Any]:
        """Every call that asked for tasks (a claim, or an exchange with room)."""
        return [
            b
            for _, p, b in self.calls
            if p.endswith("/claim") or (p.endswith("/exchange") and b["max_tasks"])
        ]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        raw = await request.aread()
        path = request.url.path.removeprefix("/api/v1")
        body = json.loads(raw) if raw and request.method != "PUT" else raw
        self.calls.append((request.method, path, body))
        async with self.changed:
            self.changed.notify_all()
        parts = path.strip("/").split("/")
        action = parts[-1] if parts[0] == "tasks" and request.method == "POST" else parts[-1].split(".")[0]
        if action == "events" and parts[0] == "worker-queues":
            return self._progress(body)  # its faults apply per task, like the route it replaces
        if self.faults.get(action):
            fault = self.faults[action].pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        if action == "exchange":
            return await self._exchange(body)
        if action == "claim":
            return httpx.Response(200, json={"tasks": await self._claim(body)})
        if parts[0] == "workers" and request.method == "DELETE":
            self.bye.set()
            return httpx.Response(204)
        if action == "heartbeat" and parts[0] == "workers":
            held = {t["id"] for t in body["tasks"]}
            answer = {
                "cancel": sorted(self.cancel & held),
                "lost": sorted(self.lost & held),
                "lease_seconds": 30,
            }
            return httpx.Response(200, json=answer)
        task_id = parts[1]
        if action in FINAL:
            self.reports[task_id].set_result((action, body))
            return httpx.Response(200, json=task_out(task_id))
        if action == "events":
            return httpx.Response(
                200, json={"last_seq": 1, "cancel_requested": task_id in self.cancel_on_events}
            )
        if request.method == "PUT":
            artifact = {
                "name": parts[-1],
                "media_type": "text/plain",
                "size": 2,
                "sha256": "",
                "created_at": NOW,
            }
            return httpx.Response(201, json=artifact)
        return httpx.Response(200, json={"ok": True})

    async def _exchange(self, body: dict[str, Any]) -> httpx.Response:
        """Each report is recorded as the per-task call it replaces (`/tasks/ID/complete` or
        `/fail`), and its faults apply to it: a 4xx refuses that report, a 5xx or a
        transport error fails the whole exchange (as a database outage would)."""
        outs: list[dict[str, Any]] = []
        for r in body["reports"]:
            action = "fail" if "error" in r else "complete"
            legacy = {k: v for k, v in r.items() if k != "id" and (k != "events" or v)}
            self.calls.append(("POST", f"/tasks/{r['id']}/{action}", legacy))
            if self.faults.get(action):
                fault = self.faults[action].pop(0)
                if isinstance(fault, Exception):
                    raise fault
                if fault.status_code >= 500:
                    return fault
                p = fault.json()
                outs.append({"id": r["id"], "problem": {k: p[k] for k in ("status", "code", "detail")}})
                continue
            self.reports[r["id"]].set_result((action, legacy))
            outs.append({"id": r["id"], "status": "failed" if action == "fail" else "completed"})
        tasks = await self._claim(body) if body["max_tasks"] else []
        return httpx.Response(200, json={"reports": outs, "tasks": tasks})

    def _progress(self, body: dict[str, Any]) -> httpx.Response:
        """Each task's batch is recorded as the `/tasks/ID/events` call it replaces, and that
        call's faults apply to it: a 4xx refuses that batch, a 5xx or a transport error the call."""
        outs: list[dict[str, Any]] = []
        for item in body["items"]:
            legacy = {k: v for k, v in item.items() if k != "id"}
            self.calls.append(("POST", f"/tasks/{item['id']}/events", legacy))
            if self.faults.get("events"):
                fault = self.faults["events"].pop(0)
                if isinstance(fault, Exception):
                    raise fault
                if fault.status_code >= 500:
                    return fault
                p = fault.json()
                outs.append({"id": item["id"], "problem": {k: p[k] for k in ("status", "code", "detail")}})
                continue
            outs.append(
                {"id": item["id"], "last_seq": 1, "cancel_requested": item["id"] in self.cancel_on_events}
            )
        return httpx.Response(200, json={"items": outs})

    async def _claim(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if not self.queue.empty():
            items.append(self.queue.get_nowait())
        elif body["wait_seconds"] > 0:
            try:
                items.append(await asyncio.wait_for(self.queue.get(), body["wait_seconds"]))
            except TimeoutError:
                return []
        while len(items) < body["max_tasks"] and not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items


def problem(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"title": code, "status": status, "detail": code, "code": code})


class Probe:
    """Test runtimes: `probe-emit` emits and returns; `probe-block` runs until cancelled."""

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.stopped: dict[str, asyncio.Event] = {}
        self.gate = asyncio.Event()

    def _mark(self, ctx: TaskContext, which: dict[str, asyncio.Event]) -> None:
        which.setdefault(ctx.id, asyncio.Event()).set()

    async def wait(self, which: dict[str, asyncio.Event], task_id: str) -> None:
        await asyncio.wait_for(which.setdefault(task_id, asyncio.Event()).wait(), 10)


def runtimes(probe: Probe) -> None:
    class Emit:
        async def run(self, ctx: TaskContext) -> Outcome:
            for n in range(3):
                ctx.emit("log", {"stream": "stdout", "line": f"line {n}"})
            if ctx.agent["policy"].get("artifact"):
                await ctx.save_artifact("out.txt", b"hi", "text/plain")
            return Outcome({"ok": True}, usage={"tokens": 3})

    class Block:
        async def run(self, ctx: TaskContext) -> Outcome:
            probe._mark(ctx, probe.started)
            try:
                if ctx.agent["policy"].get("emit"):
                    ctx.emit("log", {"line": "working"})
                if ctx.agent["policy"].get("stubborn"):
                    await asyncio.Event().wait()
                stop = asyncio.create_task(ctx.cancelled.wait())
                gate = asyncio.create_task(probe.gate.wait())
                await asyncio.wait({stop, gate}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                gate.cancel()
                if ctx.cancelled.is_set():
                    raise TaskFailed("cancelled", "stopped")
                return Outcome("gate opened")
            finally:
                probe._mark(ctx, probe.stopped)

    class Broken:
        async def run(self, ctx: TaskContext) -> Outcome:
            if ctx.agent["policy"].get("crash"):
                raise ZeroDivisionError("division by zero")
            return Outcome({"ids": {1, 2}})  # a set: not JSON

    register_runtime("probe-emit", Emit())
    register_runtime("probe-broken", Broken())
    register_runtime("probe-block", Block())


@pytest.fixture
def probe() -> Probe:
    p = Probe()
    runtimes(p)
    return p


@asynccontextmanager
async def worker_for(
    plane: FakePlane, tmp_path: Path, *, expect_error: bool = False, **kw: Any
) -> AsyncIterator[tuple[Worker, asyncio.Event, asyncio.Task[None]]]:
    client = AsyncControlPlaneClient("http://plane.test", transport=httpx.MockTransport(plane))
    kw.setdefault("heartbeat_interval", 0.02)
    worker = Worker(client, "q1", workspace_root=tmp_path / "ws", worker_id="w1", **kw)
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run(stop))
    try:
        yield worker, stop, run
    finally:
        stop.set()
        await asyncio.wait({run}, timeout=10)
        assert run.done()
        await client.aclose()
    if not expect_error:
        run.result()  # the worker ended cleanly


async def test_a_short_task_is_one_call_after_the_claim(tmp_path, probe):
    plane = FakePlane()
    plane.add("t1", "probe-emit")
    plane.add("t2", "noop", prompt="echo me")
    async with worker_for(plane, tmp_path, concurrency=2):
        action, body = await plane.report("t1")
        assert action == "complete" and body["result"] == {"ok": True} and body["usage"] == {"tokens": 3}
        assert [e["data"]["line"] for e in body["events"]] == ["line 0", "line 1", "line 2"]
        assert plane.task_calls("t1") == ["complete"]
        assert await plane.report("t2") == ("complete", {"token": "tok-1", "result": {"output": "echo me"}})
        assert plane.task_calls("t2") == ["complete"]
    assert plane.bye.is_set()
    assert not (tmp_path / "ws" / "t1").exists()  # finished tasks leave no workspace behind


async def test_events_before_an_artifact_are_sent_before_it(tmp_path, probe):
    plane = FakePlane()
    plane.add("t1", "probe-emit", artifact=True)
    async with worker_for(plane, tmp_path):
        await plane.report("t1")
    assert plane.task_calls("t1") == ["events", "out.txt", "complete"]
    put = next(c for c in plane.calls if c[0] == "PUT")
    assert put[2] == b"hi"


async def test_claims_ask_for_the_free_slots_only(tmp_path, probe):
    plane = FakePlane()
    for n in range(3):
        plane.add(f"t{n}", "probe-block")
    async with worker_for(plane, tmp_path, concurrency=3):
        for n in range(3):
            await probe.wait(probe.started, f"t{n}")
        assert [c["max_tasks"] for c in plane.claims()] == [3]  # full: no claim in flight
        plane.add("t3", "noop")
        probe.gate.set()
        assert (await plane.report("t3"))[0] == "complete"
        assert plane.claims()[1]["max_tasks"] >= 1


async def test_cancel_from_the_heartbeat_stops_the_task(tmp_path, probe):
    plane = FakePlane()
    plane.add("t1", "probe-block")
    async with worker_for(plane, tmp_path):
        await probe.wait(probe.started, "t1")
        plane.cancel.add("t1")
        action, body = await plane.report("t1")
    assert action == "fail" and body["error"]["code"] == "cancelled"


async def test_cancel_from_an_events_answer_stops_the_task(tmp_path, probe):
    plane = FakePlane()
    plane.cancel_on_events.add("t1")
    plane.add("t1", "probe-block", emit=True)
    async with worker_for(plane, tmp_path, heartbeat_interval=3600):
        action, body = await plane.report("t1")
    assert action == "fail" and body["error"]["code"] == "cancelled"


async def test_a_runtime_ignoring_the_cancel_is_cancelled_after_the_grace(tmp_path, probe):
    plane = FakePlane()
    plane.add("t1", "probe-block", stubborn=True)
    async with worker_for(plane, tmp_path, cancel_grace=0.05):
        await probe.wait(probe.started, "t1")
        plane.cancel.add("t1")
        action, body = await plane.report("t1")
        await probe.wait(probe.stopped, "t1")
    assert action == "fail" and body["error"]["code"] == "cancelled"


async def test_the_task_survives_a_control_plane_outage(tmp_path, probe):
    plane = FakePlane()
    plane.faults["exchange"] = [problem(503, "database_unavailable")]
    plane.faults["complete"] = [
        httpx.ConnectError("refused"),
        problem(503, "database_unavailable"),
        httpx.ReadError("reset"),
    ]
    plane.add("t1", "probe-emit")
    async with worker_for(plane, tmp_path):
        assert (await plane.report("t1"))[0] == "complete"
        assert plane.task_calls("t1") == ["complete"] * 4
        plane.add("t2", "noop")
        assert (await plane.report("t2"))[0] == "complete"


async def test_a_stale_lease_drops_the_task_without_another_call(tmp_path, probe):
    plane = FakePlane()
    plane.faults["events"] = [problem(409, "stale_lease")]
    plane.add("t1", "probe-block", emit=True)
    async with worker_for(plane, tmp_path, heartbeat_interval=3600):
        await probe.wait(probe.stopped, "t1")
        plane.add("t2", "noop")
        assert (await plane.report("t2"))[0] == "complete"  # the worker carries on
    assert plane.task_calls("t1") == ["events"]
    assert not plane.reports["t1"].done()


async def test_a_lost_lease_from_the_heartbeat_abandons_the_task(tmp_path, probe):
    plane = FakePlane()
    plane.add("t1", "probe-block")
    async with worker_for(plane, tmp_path):
        await probe.wait(probe.started, "t1")
        plane.lost.add("t1")
        await probe.wait(probe.stopped, "t1")
    assert plane.task_calls("t1") == []


async def test_stop_hands_running_tasks_back_after_the_grace(tmp_path, probe):
    plane = FakePlane()
    plane.add("t1", "probe-block", emit=True)
    opts = {"grace_seconds": 0, "heartbeat_interval": 3600, "concurrency": 2}
    async with worker_for(plane, tmp_path, **opts) as (_, stop, run):
        await probe.wait(probe.started, "t1")
        await plane.until(lambda: len(plane.claims()) == 2)  # long-polling for the free slot
        stop.set()
        action, body = await plane.report("t1")
        await asyncio.wait_for(run, 10)
    assert action == "release" and [e["data"]["line"] for e in body["events"]] == ["working"]
    # The 30 s long poll for the free slot was dropped at once, or `run` would not have ended.
    assert len(plane.claims()) == 2 and plane.bye.is_set()


async def test_stop_lets_a_task_finish_within_the_grace(tmp_path, probe):
    plane = FakePlane()
    plane.add("t1", "probe-block")
    async with worker_for(plane, tmp_path, grace_seconds=30) as (_, stop, _run):
        await probe.wait(probe.started, "t1")
        stop.set()
        probe.gate.set()
        assert await plane.report("t1") == ("complete", {"token": "tok-1", "result": "gate opened"})


async def test_a_missing_parameter_parks_the_task_with_its_question(tmp_path, probe):
    plane = FakePlane()
    spec = {"host": {"description": "which host", "required": True}}
    plane.add("t1", "command", command=["echo", "{host}"], parameters=spec)
    plane.add("t2", "warp-drive")
    async with worker_for(plane, tmp_path, concurrency=2):
        action, body = await plane.report("t1")
        assert action == "request-input"
        assert body == {"token": "tok-1", "question": "Value for parameter host? (which host)", "key": "host"}
        action, body = await plane.report("t2")
        assert action == "fail" and body["error"]["code"] == "unknown_runtime"


async def test_a_bad_key_stops_the_worker(tmp_path, probe):
    plane = FakePlane()
    plane.faults["exchange"] = [problem(401, "unauthorized")]
    async with worker_for(plane, tmp_path, expect_error=True) as (_, _stop, run):
        with pytest.raises(ApiError) as err:
            await asyncio.wait_for(run, 10)
    assert err.value.code == "unauthorized"


async def test_a_crashing_runtime_or_a_bad_result_fails_the_task_not_the_worker(tmp_path, probe):
    plane = FakePlane()
    plane.add("t1", "probe-broken", crash=True)
    plane.add("t2", "probe-broken")
    async with worker_for(plane, tmp_path, concurrency=2):
        action, body = await plane.report("t1")
        assert (action, body["error"]) == (
            "fail",
            {"code": "runtime_error", "message": "ZeroDivisionError: division by zero"},
        )
        action, body = await plane.report("t2")
        assert action == "fail" and body["error"]["code"] == "invalid_result"


async def run_noops(plane: FakePlane, tmp_path: Path, n: int, concurrency: int) -> None:
    """`n` no-op tasks through a worker of `concurrency` slots, each completed."""
    for i in range(n):
        plane.add(f"t{i}", "noop")
    async with worker_for(plane, tmp_path, concurrency=concurrency):
        for i in range(n):
            assert (await plane.report(f"t{i}"))[0] == "complete"


async def test_reports_finishing_together_share_a_call_with_the_next_claim(tmp_path, probe):
    plane = FakePlane()
    await run_noops(plane, tmp_path, 4, concurrency=4)
    pushes = [b for _, p, b in plane.calls if p.endswith("/exchange") and b["reports"]]
    assert sum(len(b["reports"]) for b in pushes) == 4
    assert len(pushes) < 4  # the four tasks ended together: their reports were batched
    assert not any(p.endswith(("/complete", "/claim")) for _, p, _ in plane.calls if p.startswith("/worker"))


async def test_a_full_workers_report_claims_the_slot_it_frees(tmp_path, probe):
    """One call per finished task under load: the exchange that reports a task also claims
    its replacement (its slot frees when the report is answered), not a report and then a
    poll: two round trips, the worker idle in between."""
    plane = FakePlane()
    plane.add("t0", "noop")
    plane.add("t1", "noop")
    async with worker_for(plane, tmp_path, concurrency=1):
        assert (await plane.report("t1"))[0] == "complete"
        exchanges = [b for _, p, b in plane.calls if p.endswith("/exchange")]
    assert [(len(b["reports"]), b["max_tasks"]) for b in exchanges[:2]] == [(0, 1), (1, 1)]
    assert exchanges[2]["reports"][0]["id"] == "t1"  # t1 came with t0's report: no poll between


async def test_a_worker_with_more_slots_than_a_claim_may_ask_for_asks_for_the_most(tmp_path, probe):
    """The server takes `max_tasks` ≤ 100 (a 422 otherwise, for the whole call)."""
    plane = FakePlane()
    await run_noops(plane, tmp_path, 3, concurrency=150)
    asks = [b["max_tasks"] for _, p, b in plane.calls if p.endswith("/exchange")]
    assert asks and max(asks) == 100


async def test_a_refused_report_drops_a_stale_task_and_fails_a_refused_one(tmp_path, probe):
    plane = FakePlane()
    plane.faults["complete"] = [problem(409, "stale_lease"), problem(422, "payload_invalid")]
    plane.add("t1", "noop")
    async with worker_for(plane, tmp_path):
        await plane.until(lambda: plane.task_calls("t1") == ["complete"])
        plane.add("t2", "noop")
        action, body = await plane.report("t2")  # refused (422): the worker fails it instead
        assert action == "fail" and body["error"]["code"] == "worker_error"
        assert "payload_invalid" in body["error"]["message"]
    assert plane.task_calls("t1") == ["complete"]  # stale: no other call for it
    assert not plane.reports["t1"].done()
    assert plane.task_calls("t2") == ["complete", "fail"]
