"""Two control-plane replicas on one PostgreSQL: wake-ups and streams cross replicas, and a
follower of a killed replica resumes on the other with Last-Event-ID, missing nothing; MCP
clients follow tasks on either replica and need no sticky sessions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.board_api.test_streams import frames
from tests.support import free_port, spawn, wait_for
from tests.tools.conftest import MODES, running_worker, setup_catalog
from tests.tools.helpers import live_workers, ok
from tests.tools.test_elicitation import User

STATE_KEY = "replicas-share-this-key-to-unseal-each-others-mcp-state"

pytestmark = [
    pytest.mark.xdist_group("processes"),
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]


@pytest.fixture
def replicas(db_url: str, tmp_path: Path) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    for i in range(2):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = spawn(
            ["-m", "cli.serve"],
            log=tmp_path / f"replica{i}.log",
            META_AGENT_DATABASE_URL=db_url,
            META_AGENT_PORT=str(port),
            META_AGENT_EMBEDDED_WORKER="false",
            # The same on every replica, as docs/operations.md says: an MCP input-form round
            # trip may be sealed by one replica and come back to the other.
            META_AGENT_MCP_STATE_KEYS=json.dumps([STATE_KEY]),
        )
        started.append((url, proc))
    for url, _ in started:
        wait_for(
            lambda url=url: httpx.get(url + "/readyz", timeout=1).status_code == 200, 30, f"replica {url}"
        )
    yield started
    for _, p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def seed(api: httpx.Client) -> None:
    assert api.post("/worker-queues", json={"name": "q1"}).status_code == 201
    assert (
        api.post("/agents", json={"name": "echo", "runtime": "noop", "default_queue": "q1"}).status_code
        == 201
    )


def test_claim_on_one_replica_wakes_for_a_task_created_on_the_other(replicas: list) -> None:  # type: ignore[type-arg]
    (a, _), (b, _) = replicas
    with (
        httpx.Client(base_url=a + "/api/v1", timeout=30) as ca,
        httpx.Client(base_url=b + "/api/v1", timeout=30) as cb,
    ):
        seed(cb)
        result: dict = {}  # type: ignore[type-arg]
        polling = threading.Event()

        def poll() -> None:
            polling.set()
            t0 = time.monotonic()
            r = ca.post("/worker-queues/q1/claim", json={"worker_id": "w-a", "wait_seconds": 20})
            result["elapsed"] = time.monotonic() - t0
            result["tasks"] = r.json()["tasks"]

        t = threading.Thread(target=poll)
        t.start()
        assert polling.wait(5)
        # The long-poll must be parked on replica A before the task exists.
        wait_for(
            lambda: "meta_agent_stream_followers 1.0" in httpx.get(a + "/metrics").text,
            10,
            "the parked claim",
        )
        created = time.monotonic()
        tid = cb.post("/tasks", json={"agent": "echo", "prompt": "cross"}).json()["id"]
        t.join(20)
        assert [x["task"]["id"] for x in result["tasks"]] == [tid]
        # Woken by NOTIFY, not by the 5 s safety re-check.
        assert time.monotonic() - created < 2.0


def test_follower_of_killed_replica_resumes_on_the_other(replicas: list) -> None:  # type: ignore[type-arg]
    (a, proc_a), (b, _) = replicas
    with httpx.Client(base_url=b + "/api/v1", timeout=30) as cb:
        seed(cb)
        tid = cb.post("/tasks", json={"agent": "echo", "prompt": "follow me"}).json()["id"]
        (item,) = cb.post("/worker-queues/q1/claim", json={"worker_id": "w", "wait_seconds": 5}).json()[
            "tasks"
        ]
        token = item["token"]

        def post(start: int, n: int) -> None:
            evs = [{"kind": "log", "data": {"line": f"l{i}"}} for i in range(start, start + n)]
            assert cb.post(f"/tasks/{tid}/events", json={"token": token, "events": evs}).status_code == 200

        seen: list[int] = []
        lines: list[str] = []
        got_three = threading.Event()

        def follow_a() -> None:
            try:
                with (
                    httpx.Client(base_url=a, timeout=30) as s,
                    s.stream("GET", f"/api/v1/tasks/{tid}/stream") as r,
                ):
                    for f in frames(r):
                        seen.append(int(f["id"]))
                        if f["event"] == "log":
                            lines.append(json.loads(f["data"])["data"]["line"])
                        if len(lines) == 3:
                            got_three.set()
            except httpx.HTTPError:
                pass  # the replica died under us: that is the point

        t = threading.Thread(target=follow_a)
        t.start()
        post(0, 3)  # written through replica B, streamed by replica A
        assert got_three.wait(10)
        os.killpg(proc_a.pid, signal.SIGKILL)
        t.join(10)
        assert not t.is_alive()
        post(3, 4)
        assert cb.post(f"/tasks/{tid}/complete", json={"token": token, "result": "done"}).status_code == 200
        with (
            httpx.Client(base_url=b, timeout=30) as s,
            s.stream("GET", f"/api/v1/tasks/{tid}/stream", headers={"Last-Event-ID": str(seen[-1])}) as r,
        ):
            for f in frames(r):
                if f.get("event") == "end":
                    break
                seen.append(int(f["id"]))
                if f["event"] == "log":
                    lines.append(json.loads(f["data"])["data"]["line"])
        last = cb.get(f"/tasks/{tid}").json()["last_seq"]
    assert seen == list(range(1, last + 1))
    assert lines == [f"l{i}" for i in range(7)]


class Stamped:
    """A progress callback that records (seq, message, arrival time) and touches a gate file
    when a given message arrives (so the task goes on only once the client has seen it)."""

    def __init__(self, gates: dict[str, Path] | None = None) -> None:
        self.seen: list[tuple[int, str | None, float]] = []
        self.gates = gates or {}

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((int(progress), message, time.monotonic()))
        gate = self.gates.get(message or "")
        if gate is not None:
            gate.touch()

    def at(self, message: str) -> float:
        return next(t for _, m, t in self.seen if m == message)


def gated_script(gates: list[Path]) -> str:
    """Print `step0`, then wait for each gate file before printing the next step."""
    parts = ["echo step0"]
    for i, gate in enumerate(gates, 1):
        parts.append(f'while [ ! -e "{gate}" ]; do sleep 0.02; done; echo step{i}')
    return "; ".join(parts)


def seed_mcp(url: str) -> None:
    with httpx.Client(base_url=url + "/api/v1", timeout=30) as api:
        setup_catalog(api)  # queue q1, agents greet (asks whom to greet) and sh


@pytest.mark.parametrize("mode", MODES)
async def test_mcp_stream_task_on_one_replica_follows_a_worker_on_the_other(
    replicas: list,  # type: ignore[type-arg]
    mode: str,
    tmp_path: Path,
    shared_tmp: Path,
) -> None:
    """A worker runs the task through replica A; an MCP client of replica B sees each event as
    a progress notification, in order, pushed by NOTIFY (each step is released only once the
    client has seen the one before, and arrives well inside B's 5 s safety re-check)."""
    (a, _), (b, _) = replicas
    seed_mcp(b)
    gates = [shared_tmp / f"gate{i}" for i in range(1, 4)]  # the sandboxed task must see them
    progress = Stamped({f"step{i}": gate for i, gate in enumerate(gates)})
    async with (
        running_worker(a, tmp_path / "ws"),
        httpx2.AsyncClient(timeout=60) as http,
        Client(streamable_http_client(f"{b}/mcp", http_client=http), mode=mode) as c,  # type: ignore[arg-type]
    ):
        await live_workers(b, 1)
        created = await ok(
            c, "create_task", agent="sh", prompt="p", parameters={"script": gated_script(gates)}
        )
        tid = created["id"]
        done = await ok(c, "stream_task", progress, task_id=tid, timeout=60)  # type: ignore[arg-type]
    assert done["outcome"] == "finished" and done["status"] == "completed", done
    assert done["result"]["output"] == "step0\nstep1\nstep2\nstep3\n"
    seqs = [s for s, _, _ in progress.seen]
    assert seqs == list(range(1, done["last_seq"] + 1))  # every event, once, in order
    messages = [m for _, m, _ in progress.seen]
    steps = [m for m in messages if m and m.startswith("step")]
    assert steps == ["step0", "step1", "step2", "step3"]
    assert messages[-1] == "status: completed"
    for i in range(1, 4):  # gate i was touched when step{i-1} arrived
        assert progress.at(f"step{i}") - progress.at(f"step{i - 1}") < 2.0


class RoundRobin(httpx2.AsyncBaseTransport):
    """Each request goes to the next replica in turn: a load balancer without sticky sessions."""

    def __init__(self, urls: list[str]) -> None:
        self.targets = [httpx2.URL(u) for u in urls]
        self.inner = httpx2.AsyncHTTPTransport()
        self.sent: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        target = self.targets[len(self.sent) % len(self.targets)]
        request.url = request.url.copy_with(host=target.host, port=target.port)
        request.headers["Host"] = f"{target.host}:{target.port}"
        self.sent.append((request.method, str(target)))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("mode", MODES)
async def test_mcp_needs_no_sticky_sessions(
    replicas: list,  # type: ignore[type-arg]
    mode: str,
    tmp_path: Path,
) -> None:
    """Consecutive MCP requests alternate between the replicas (2025-11-25 clients included,
    whose session would otherwise live in one replica's memory) and everything works."""
    (a, _), (b, _) = replicas
    seed_mcp(a)
    rr = RoundRobin([a, b])
    progress = Stamped()
    user = User()
    async with (
        running_worker(b, tmp_path / "ws"),
        httpx2.AsyncClient(transport=rr, timeout=60) as http,
        Client(
            streamable_http_client(f"{a}/mcp", http_client=http),  # type: ignore[arg-type]
            mode=mode,
            elicitation_callback=user,
        ) as c,
    ):
        assert c.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        await live_workers(a, 1)
        tools = {t.name for t in (await c.list_tools()).tools}
        assert {"create_task", "stream_task"} <= tools
        script = {"script": "echo one; echo two"}
        created = await ok(c, "create_task", agent="sh", prompt="p", parameters=script)
        done = await ok(c, "stream_task", progress, task_id=created["id"], timeout=60)  # type: ignore[arg-type]
        again = await ok(c, "get_task", task_id=created["id"])
        # A task that asks: 2026-07-28 answers through the client's form, the retry carrying
        # state sealed by the other replica; 2025-11-25 gets the question back to relay.
        asks = (await ok(c, "create_task", agent="greet", prompt="say hello"))["id"]
        greeted = await ok(c, "stream_task", task_id=asks, timeout=60)
        if mode == "legacy":
            assert greeted["outcome"] == "needs_input" and user.asked == [], greeted
            await ok(c, "respond_to_task", task_id=asks, answer="Ada")
            greeted = await ok(c, "stream_task", task_id=asks, after=greeted["last_seq"], timeout=60)
        else:
            assert greeted["answers"] == ["Ada"] and len(user.asked) == 1, greeted
    assert done["outcome"] == "finished" and done["status"] == "completed", done
    assert done["result"]["output"] == "one\ntwo\n" and again["status"] == "completed"
    assert [s for s, _, _ in progress.seen] == list(range(1, done["last_seq"] + 1))
    assert [m for _, m, _ in progress.seen if m in ("one", "two")] == ["one", "two"]
    assert greeted["status"] == "completed" and greeted["result"]["output"] == "hello Ada\n", greeted
    posts = [target for method, target in rr.sent if method == "POST"]
    assert len(posts) >= 4 and {a, b} <= {t.rstrip("/") for t in posts}, rr.sent
