"""Two control-plane replicas on one PostgreSQL: wake-ups and streams cross replicas, and a
follower of a killed replica resumes on the other with Last-Event-ID, missing nothing."""

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
import pytest

from tests.board_api.test_streams import frames
from tests.support import free_port, spawn, wait_for

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
            ["-m", "meta_agent.server"],
            log=tmp_path / f"replica{i}.log",
            META_AGENT_DATABASE_URL=db_url,
            META_AGENT_PORT=str(port),
            META_AGENT_EMBEDDED_WORKER="false",
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
