"""Bad input to every tool comes back as an error result that names the problem and says what
to do, never as a protocol error, and changes nothing in the control plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from sdk.client import AsyncControlPlaneClient
from tests.support import LiveServer, free_port
from tests.tools.conftest import Connect, running_worker
from tests.tools.helpers import error, ok


def snapshot(srv: LiveServer) -> Any:
    with srv.client() as api:
        tasks = [
            (t["id"], t["status"], t["last_seq"])
            for t in api.get("/tasks", params={"limit": 200}).json()["items"]
        ]
        agents = [a["name"] for a in api.get("/agents").json()["items"]]
        queues = [q["name"] for q in api.get("/worker-queues").json()["items"]]
    return tasks, agents, queues


async def park_with_choices(url: str) -> str:
    """A task waiting on a question with choices, put there through the worker protocol."""
    async with httpx.AsyncClient(base_url=url + "/api/v1") as api:
        await api.post("/worker-queues", json={"name": "manual"})
        await api.post("/agents", json={"name": "approver", "runtime": "noop", "default_queue": "manual"})
        tid = (await api.post("/tasks", json={"agent": "approver", "prompt": "deploy"})).json()["id"]
    async with AsyncControlPlaneClient(url, api_key="") as w:
        [claimed] = await w.worker.claim("manual", "w-test", wait_seconds=5)
        await w.worker.request_input(tid, claimed.token, "Deploy to prod?", choices=["approve", "deny"])
    return tid


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("transport", "mode"), [("inprocess", "auto"), ("http", "legacy")])
async def test_bad_input_to_every_tool(
    transport: str, mode: str, sqlite_plane: LiveServer, connect: Connect, tmp_path: Path
) -> None:
    url = sqlite_plane.url
    async with running_worker(url, tmp_path / "ws"), connect(transport, url, mode=mode) as c:
        finished = await ok(c, "create_task", agent="sh", prompt="p", parameters={"script": "true"})
        assert (await ok(c, "stream_task", task_id=finished["id"], timeout=30))["status"] == "completed"
        with sqlite_plane.client() as api:
            api.post("/worker-queues", json={"name": "idle"})
        pending = await ok(
            c, "create_task", agent="sh", queue="idle", prompt="p", parameters={"script": "true"}
        )
    waiting = await park_with_choices(url)
    before = snapshot(sqlite_plane)

    async with connect(transport, url, mode=mode) as c:
        cases: list[tuple[str, dict[str, Any], list[str]]] = [
            ("list_agents", {"query": 42}, ["query", "valid string"]),
            ("create_task", {"agent": "nobody", "prompt": "x"}, ["agent 'nobody' not found", "list_agents"]),
            ("create_task", {"team": "nobody", "prompt": "x"}, ["team", "nobody", "not found"]),
            (
                "create_task",
                {"agent": "sh", "team": "t", "prompt": "x"},
                ["exactly one of `agent` or `team`"],
            ),
            ("create_task", {"prompt": "x"}, ["exactly one of `agent` or `team`"]),
            ("create_task", {"agent": "sh"}, ["prompt", "required"]),
            ("create_task", {"agent": "sh", "prompt": ""}, ["prompt", "at least 1 character"]),
            ("create_task", {"agent": "sh", "prompt": "x", "parameters": "script"}, ["parameters", "dict"]),
            ("create_task", {"agent": "sh", "prompt": "x", "queue": "nowhere"}, ["nowhere", "list_queues"]),
            ("stream_task", {"task_id": "nope"}, ["task nope not found", "list_tasks"]),
            (
                "stream_task",
                {"task_id": finished["id"], "timeout": 1000},
                ["timeout", "less than or equal to 300"],
            ),
            (
                "stream_task",
                {"task_id": finished["id"], "after": -1},
                ["after", "greater than or equal to 0"],
            ),
            ("stream_task", {"task_id": 5}, ["task_id", "valid string"]),
            ("get_task", {"task_id": "nope"}, ["task nope not found"]),
            ("get_task", {}, ["task_id", "required"]),
            ("list_tasks", {"status": "done"}, ["status", "'pending', 'running'"]),
            ("list_tasks", {"limit": 0}, ["limit", "greater than or equal to 1"]),
            ("list_tasks", {"limit": "many"}, ["limit", "valid integer"]),
            ("list_tasks", {"cursor": "garbage"}, ["cursor", "invalid_cursor"]),
            (
                "cancel_task",
                {"task_id": finished["id"]},
                ["is completed", "only unfinished tasks can be cancelled"],
            ),
            ("cancel_task", {"task_id": "nope"}, ["task nope not found"]),
            ("respond_to_task", {"task_id": finished["id"], "answer": "x"}, ["not waiting for input"]),
            (
                "respond_to_task",
                {"task_id": pending["id"], "answer": "x"},
                ["is pending, not waiting for input"],
            ),
            (
                "respond_to_task",
                {"task_id": waiting, "answer": "maybe"},
                ["'maybe' is not one of", "approve, deny"],
            ),
            ("respond_to_task", {"task_id": waiting, "answer": ""}, ["answer", "at least 1 character"]),
            ("respond_to_task", {"task_id": "nope", "answer": "x"}, ["task nope not found"]),
            ("retry_task", {"task_id": pending["id"]}, ["is pending", "only completed, failed or cancelled"]),
            ("retry_task", {"task_id": "nope"}, ["task nope not found"]),
        ]
        wrong = []
        for tool, args, wanted in cases:
            text = await error(c, tool, **args)
            if not all(w in text for w in wanted):
                wrong.append((tool, args, text))
        assert wrong == []
        # A valid answer to a question with choices is matched to the choice's spelling.
        assert (await ok(c, "respond_to_task", task_id=waiting, answer=" Approve"))["status"] == "pending"
    after = snapshot(sqlite_plane)
    changed = [t for t in after[0] if t not in before[0]]
    assert [t[0] for t in changed] == [waiting] and after[1:] == before[1:]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_no_live_worker_anywhere_is_an_error_that_says_how_to_start_one(
    sqlite_plane: LiveServer, connect: Connect
) -> None:
    # The queue comes from the control plane's one rule (store/tasks.py `_resolve_queue`), not
    # from a second guess in the MCP tool: with a single queue the task waits there, and says so.
    with sqlite_plane.client() as api:
        api.post("/agents", json={"name": "roamer", "runtime": "noop"})  # no default queue
    async with connect("inprocess", sqlite_plane.url) as c:
        created = await ok(c, "create_task", agent="roamer", prompt="x")
        assert created["queue"] == "q1" and "meta-agent worker start --queue q1" in created["note"]
        with sqlite_plane.client() as api:
            api.post("/worker-queues", json={"name": "q2"})
            before = api.get("/tasks").json()["items"]
        text = await error(c, "create_task", agent="roamer", prompt="x")
    assert "No worker is live on any queue" in text and "meta-agent worker start" in text
    with sqlite_plane.client() as api:
        assert api.get("/tasks").json()["items"] == before


async def test_an_unreachable_control_plane_is_an_error_result(connect: Connect) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with connect("inprocess", dead) as c:
        for tool, args in (("list_queues", {}), ("list_agents", {}), ("get_task", {"task_id": "x"})):
            text = await error(c, tool, **args)
            assert f"the control plane at {dead} is not reachable" in text and "meta-agent serve" in text
