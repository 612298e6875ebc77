"""A worker that hangs (SIGSTOP: no heartbeats, like one cut off from the network) past its
lease: the task is recovered and completed elsewhere; when the old worker wakes up, its late
calls are refused by the fencing token and change nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.support import LiveServer, spawn, wait_for


def test_hung_worker_loses_the_task_and_its_late_calls_change_nothing(
    server: LiveServer, tmp_path: Path, shared_tmp: Path, procs: list
) -> None:  # type: ignore[type-arg]
    gate, mark = shared_tmp / "gate", shared_tmp / "first"
    # Attempt 1 waits for the gate (opened while its worker is frozen), then reports;
    # attempt 2 finishes at once.
    script = (
        f'if [ -e "{mark}" ]; then echo second; else touch "{mark}"; echo first; '
        f'while [ ! -e "{gate}" ]; do sleep 0.05; done; echo late; fi'
    )
    with server.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        agent = {"name": "sh", "runtime": "command", "default_queue": "q1", "command": ["bash", "-c", script]}
        assert c.post("/agents", json=agent).status_code == 201

        def start(name: str):  # type: ignore[no-untyped-def]
            p = spawn(
                ["-m", "cli.main", "worker", "start", "--queue", "q1", "--concurrency", "1"],
                log=tmp_path / f"{name}.log",
                META_AGENT_URL=server.url,
                META_AGENT_WORKSPACE_ROOT=str(tmp_path / name),
            )
            procs.append(p)
            return p

        old = start("old")
        tid = c.post("/tasks", json={"agent": "sh", "prompt": "p"}).json()["id"]

        def lines() -> list[str]:
            evs = c.get(f"/tasks/{tid}/events").json()["items"]
            return [e["data"]["line"] for e in evs if e["kind"] == "log" and "line" in e["data"]]

        wait_for(lambda: lines() == ["first"], 30, "attempt 1 to start")
        os.killpg(old.pid, signal.SIGSTOP)  # the worker and its command freeze: no heartbeats
        start("new")
        task = wait_for(
            lambda: (t := c.get(f"/tasks/{tid}").json())["status"] == "completed" and t, 30, "recovery"
        )
        assert task["attempt"] == 2 and lines() == ["first", "second"]
        before = c.get(f"/tasks/{tid}/events").json()["last_seq"]

        gate.touch()
        os.killpg(old.pid, signal.SIGCONT)
        # On waking, the old worker learns from its heartbeat that the lease is gone and drops
        # the task (its command is killed); whatever it might still send is fenced off below.
        log = tmp_path / "old.log"
        wait_for(lambda: "lease lost" in log.read_text(), 30, "the old worker to drop the task")
        after = c.get(f"/tasks/{tid}").json()
        assert after["status"] == "completed" and after["attempt"] == 2 and after["last_seq"] == before
        assert "late" not in lines()
        with httpx.Client(base_url=server.url + "/api/v1") as raw:
            r = raw.post(f"/tasks/{tid}/complete", json={"token": "1", "result": "late"})
            assert r.status_code == 409 and r.json()["code"] == "stale_lease"
