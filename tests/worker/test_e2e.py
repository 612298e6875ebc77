"""Workers as real processes against a real control plane: durability, cancel, input.

These need the worker (`meta-agent worker start`) and, for restarts, the server as separate
processes that a test can SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import LiveServer, free_port, spawn, wait_for

pytestmark = pytest.mark.xdist_group("processes")


def start_worker(
    url: str, ws: Path, queue: str = "q1", concurrency: int = 1, grace: float = 20
) -> subprocess.Popen[bytes]:
    return spawn(
        ["-m", "cli.main", "worker", "start", "--queue", queue, "--concurrency", str(concurrency)],
        log=ws.parent / f"{ws.name}.log",
        META_AGENT_URL=url,
        META_AGENT_WORKSPACE_ROOT=str(ws),
        META_AGENT_WORKER_GRACE_SECONDS=str(grace),
    )


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    proc.wait(20)


def setup_catalog(c: httpx.Client) -> None:
    assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
    agents = [
        {
            "name": "sh",
            "runtime": "command",
            "default_queue": "q1",
            "command": ["bash", "-c", 'eval "$PARAM_SCRIPT"'],
            "parameters": {"script": {"required": True, "description": "bash code"}},
        },
        {
            "name": "greet",
            "runtime": "command",
            "default_queue": "q1",
            "command": ["python3", "-c", "import sys; print('hello', sys.argv[1])", "{who}"],
            "parameters": {"who": {"required": True, "description": "whom to greet"}},
        },
    ]
    for a in agents:
        assert c.post("/agents", json=a).status_code == 201


def events(c: httpx.Client, tid: str) -> list[dict]:  # type: ignore[type-arg]
    return c.get(f"/tasks/{tid}/events").json()["items"]  # type: ignore[no-any-return]


def logs(c: httpx.Client, tid: str) -> list[str]:
    return [e["data"].get("line", "") for e in events(c, tid) if e["kind"] == "log" and "line" in e["data"]]


def status_is(c: httpx.Client, tid: str, *want: str) -> dict | None:  # type: ignore[type-arg]
    t = c.get(f"/tasks/{tid}").json()
    return t if t["status"] in want else None


def test_command_task_streams_output_saves_artifact_and_completes(
    server: LiveServer, tmp_path: Path, procs: list
) -> None:  # type: ignore[type-arg]
    with server.client() as c:
        setup_catalog(c)
        script = "echo one; echo two >&2; mkdir -p artifacts; echo report > artifacts/r.txt; echo three"
        tid = c.post(
            "/tasks", json={"agent": "sh", "prompt": "run", "parameters": {"script": script}}
        ).json()["id"]
        procs.append(start_worker(server.url, tmp_path / "ws"))
        task = wait_for(lambda: status_is(c, tid, "completed", "failed"), 30, "the task to finish")
        assert task["status"] == "completed", task
        assert logs(c, tid) == ["one", "two", "three"] or sorted(logs(c, tid)) == ["one", "three", "two"]
        assert c.get(f"/tasks/{tid}/artifacts/r.txt").content == b"report\n"
        seqs = [e["seq"] for e in events(c, tid)]
        assert seqs == list(range(1, len(seqs) + 1))


def test_missing_parameter_asks_then_answer_completes(
    server: LiveServer, tmp_path: Path, procs: list
) -> None:  # type: ignore[type-arg]
    with server.client() as c:
        setup_catalog(c)
        procs.append(start_worker(server.url, tmp_path / "ws"))
        tid = c.post("/tasks", json={"agent": "greet", "prompt": "say hi"}).json()["id"]
        task = wait_for(lambda: status_is(c, tid, "requires_input"), 30, "the question")
        assert task["pending_input"]["ref"] == "who" and "whom to greet" in task["pending_input"]["question"]
        assert c.post(f"/tasks/{tid}/input", json={"answer": "Ada; rm -rf / $(id)"}).status_code == 200
        task = wait_for(lambda: status_is(c, tid, "completed", "failed"), 30, "completion")
        assert task["status"] == "completed", task
        assert logs(c, tid) == ["hello Ada; rm -rf / $(id)"]


def test_cancel_running_task_within_two_seconds(server: LiveServer, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    with server.client() as c:
        setup_catalog(c)
        procs.append(start_worker(server.url, tmp_path / "ws"))
        tid = c.post(
            "/tasks", json={"agent": "sh", "prompt": "p", "parameters": {"script": "echo go; sleep 60"}}
        ).json()["id"]
        wait_for(lambda: "go" in logs(c, tid), 30, "the command to start")
        t0 = time.monotonic()
        assert c.post(f"/tasks/{tid}/cancel").json()["cancel_requested"] is True
        wait_for(lambda: status_is(c, tid, "cancelled"), 5, "cancelled")
        assert time.monotonic() - t0 < 2.0
        pending = c.post(
            "/tasks", json={"agent": "sh", "prompt": "p", "parameters": {"script": "true"}}
        ).json()
        # The worker is free again and takes new work.
        wait_for(lambda: status_is(c, pending["id"], "completed"), 30, "the next task")


def test_sigkilled_worker_task_is_reclaimed_and_completes(
    server: LiveServer, tmp_path: Path, shared_tmp: Path, procs: list
) -> None:  # type: ignore[type-arg]
    mark = shared_tmp / "first-attempt"
    script = f'if [ -e "{mark}" ]; then echo second; else touch "{mark}"; echo first; sleep 20; fi'
    with server.client() as c:
        setup_catalog(c)
        a = start_worker(server.url, tmp_path / "wa")
        procs.append(a)
        tid = c.post("/tasks", json={"agent": "sh", "prompt": "p", "parameters": {"script": script}}).json()[
            "id"
        ]
        wait_for(lambda: "first" in logs(c, tid), 30, "the first attempt to start")
        kill(a)
        procs.append(start_worker(server.url, tmp_path / "wb"))
        task = wait_for(lambda: status_is(c, tid, "completed", "failed"), 30, "the second attempt")
        assert task["status"] == "completed" and task["attempt"] == 2
        evs = events(c, tid)
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
        assert [e["data"]["status"] for e in evs if e["kind"] == "status"] == [
            "pending",
            "running",
            "pending",
            "running",
            "completed",
        ]
        assert logs(c, tid) == ["first", "second"]
        assert {e["attempt"] for e in evs if e["kind"] == "log"} == {1, 2}


def test_sigterm_hands_running_task_back(server: LiveServer, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    with server.client() as c:
        setup_catalog(c)
        w = start_worker(server.url, tmp_path / "ws", grace=1)
        procs.append(w)
        tid = c.post(
            "/tasks", json={"agent": "sh", "prompt": "p", "parameters": {"script": "echo go; sleep 60"}}
        ).json()["id"]
        wait_for(lambda: "go" in logs(c, tid), 30, "the command to start")
        os.killpg(w.pid, signal.SIGTERM)
        # The task gets its grace period, then is handed back, and the worker exits cleanly.
        assert w.wait(30) == 0
        task = c.get(f"/tasks/{tid}").json()
        assert task["status"] == "pending" and task["attempt"] == 1 and task["worker_id"] is None
        assert c.get("/workers").json()["items"] == []


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_control_plane_restart_mid_task(db_url: str, tmp_path: Path, shared_tmp: Path, procs: list) -> None:  # type: ignore[type-arg]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {
        "META_AGENT_DATABASE_URL": db_url,
        "META_AGENT_PORT": str(port),
        "META_AGENT_EMBEDDED_WORKER": "false",
        # Longer than a restart takes on a loaded 2-core machine: this test is about the
        # task surviving the restart, not about lease expiry (tested on its own), and a lease
        # that ran out while the server was starting re-ran the script ("before" twice).
        "META_AGENT_LEASE_SECONDS": "60",
    }

    def start_server() -> subprocess.Popen[bytes]:
        p = spawn(["-m", "cli.serve"], **server_env)
        procs.append(p)
        wait_for(lambda: httpx.get(url + "/readyz", timeout=1).status_code == 200, 30, "the server")
        return p

    srv = start_server()
    gate = shared_tmp / "gate"
    script = f'echo before; while [ ! -e "{gate}" ]; do sleep 0.05; done; echo after'
    with httpx.Client(base_url=url + "/api/v1", timeout=10) as c:
        setup_catalog(c)
        procs.append(start_worker(url, tmp_path / "ws"))
        tid = c.post("/tasks", json={"agent": "sh", "prompt": "p", "parameters": {"script": script}}).json()[
            "id"
        ]
        wait_for(lambda: "before" in logs(c, tid), 30, "the task to start")
    kill(srv)
    gate.touch()  # the task finishes while the control plane is down
    start_server()
    with httpx.Client(base_url=url + "/api/v1", timeout=10) as c:
        task = wait_for(lambda: status_is(c, tid, "completed", "failed"), 40, "completion after the restart")
        assert task["status"] == "completed", task
        assert logs(c, tid) == ["before", "after"]
        evs = events(c, tid)
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))


def test_eight_worker_processes_race_over_500_tasks_exactly_once(
    server_factory: Any, db_url: str, tmp_path: Path, procs: list
) -> None:  # type: ignore[type-arg]
    # The race is over claims, not leases: a lease long enough that a heartbeat delayed by a
    # busy machine (8 worker processes on 2 cores) does not hand a task to a second worker.
    server = server_factory(db_url, lease_seconds=30.0)
    with server.client() as c:
        setup_catalog(c)
        assert (
            c.post("/agents", json={"name": "noop", "runtime": "noop", "default_queue": "q1"}).status_code
            == 201
        )
        for i in range(8):
            procs.append(start_worker(server.url, tmp_path / f"w{i}", concurrency=4))
        wait_for(lambda: len(c.get("/workers").json()["items"]) == 8, 60, "8 live workers")
        ids = [c.post("/tasks", json={"agent": "noop", "prompt": f"t{i}"}).json()["id"] for i in range(500)]
        wait_for(
            lambda: c.get("/board", params={"limit": 1}).json()["columns"]["completed"]["count"] == 500,
            120,
            "500 completions",
        )
        cols = c.get("/board", params={"limit": 1}).json()["columns"]
        assert {k: v["count"] for k, v in cols.items() if v["count"]} == {"completed": 500}
        claimed_by: dict[str, str] = {}
        cursor = None
        while True:
            page = c.get("/tasks", params={"limit": 200, **({"cursor": cursor} if cursor else {})}).json()
            for t in page["items"]:
                assert t["attempt"] == 1, t  # claimed once, never re-run
                assert t["result"] == {"output": t["prompt"]}
                claimed_by[t["id"]] = t["worker_id"] or ""
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert set(claimed_by) == set(ids)
        for tid in ids[::50]:
            running = [
                e for e in events(c, tid) if e["kind"] == "status" and e["data"]["status"] == "running"
            ]
            assert len(running) == 1
        workers_used = {
            e["data"]["worker_id"]
            for tid in ids[::5]
            for e in events(c, tid)
            if e["kind"] == "status" and e["data"]["status"] == "running"
        }
        assert len(workers_used) >= 2
