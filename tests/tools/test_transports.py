"""Every tool and resource through the official `mcp` Client, on every transport and both
protocol versions, and the create -> stream -> requires input -> respond -> complete flow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client

from tests.support import LiveServer
from tests.tools.conftest import MODES, TRANSPORTS, Connect, running_worker
from tests.tools.helpers import Progress, call, live_workers, ok

ALL_TOOLS = {
    "list_agents",
    "list_queues",
    "create_task",
    "stream_task",
    "get_task",
    "list_tasks",
    "cancel_task",
    "respond_to_task",
    "retry_task",
}


async def ask_and_answer_flow(c: Client, expect_version: str) -> None:
    """create_task, stream_task with progress, the question, respond_to_task, completion."""
    assert c.protocol_version == expect_version
    created = await ok(c, "create_task", agent="greet", prompt="say hello")
    tid = created["id"]
    assert created["status"] == "pending" and created["queue"] == "q1"
    assert created["board_url"].endswith(f"/#/tasks/{tid}")

    progress = Progress()
    first = await ok(c, "stream_task", progress, task_id=tid, timeout=30)
    assert first["outcome"] == "needs_input" and first["status"] == "requires_input"
    assert first["question"]["question"].startswith("Value for parameter who?")
    assert "respond_to_task" in first["next_step"]
    # Every event so far came as a progress notification, in order, with its seq.
    assert progress.seqs == list(range(1, first["last_seq"] + 1))
    assert "status: running" in progress.messages and "status: requires_input" in progress.messages

    answered = await ok(c, "respond_to_task", task_id=tid, answer="Ada")
    assert answered["status"] == "pending"
    more = Progress()
    done = await ok(c, "stream_task", more, task_id=tid, after=first["last_seq"], timeout=30)
    assert done["outcome"] == "finished" and done["status"] == "completed", done
    assert done["result"]["output"] == "hello Ada\n"
    assert more.seqs and more.seqs[0] == first["last_seq"] + 1
    assert "hello Ada" in more.messages
    task = await ok(c, "get_task", task_id=tid)
    assert task["status"] == "completed" and task["source"] == "mcp"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_tool_and_resource(
    transport: str, mode: str, sqlite_plane: LiveServer, connect: Connect, tmp_path: Path
) -> None:
    url = sqlite_plane.url
    with sqlite_plane.client() as api:
        assert api.post("/worker-queues", json={"name": "idle"}).status_code == 201
    version = "2026-07-28" if mode == "auto" else "2025-11-25"
    async with running_worker(url, tmp_path / "ws"), connect(transport, url, mode=mode) as c:
        await live_workers(url, 1)
        tools = {t.name: t for t in (await c.list_tools()).tools}
        # The schedule tools are served over stdio and /mcp, not by the default in-process server.
        schedule_tools = {"list_schedules", "create_schedule", "pause_schedule", "resume_schedule"}
        assert set(tools) == (ALL_TOOLS if transport == "inprocess" else ALL_TOOLS | schedule_tools)
        assert all(t.output_schema and t.description for t in tools.values())
        for name in ("list_agents", "list_queues", "get_task", "list_tasks"):
            assert tools[name].annotations and tools[name].annotations.read_only_hint is True
        assert tools["cancel_task"].annotations.destructive_hint is True  # type: ignore[union-attr]
        assert tools["create_task"].annotations.read_only_hint is False  # type: ignore[union-attr]

        catalog = await ok(c, "list_agents", query="greet")
        assert [a["name"] for a in catalog["agents"]] == ["greet"]
        assert catalog["agents"][0]["parameters"]["who"]["required"] is True
        assert catalog["agents"][0]["default_queue"] == "q1"
        queues = {q["name"]: q for q in (await ok(c, "list_queues"))["queues"]}
        assert queues["q1"]["active_workers"] == 1 and queues["idle"]["active_workers"] == 0

        await ask_and_answer_flow(c, version)

        ran = await ok(c, "create_task", agent="sh", prompt="p", parameters={"script": "echo out"})
        done = await ok(c, "stream_task", task_id=ran["id"], timeout=30)
        assert done["status"] == "completed" and done["result"]["output"] == "out\n"
        again = await ok(c, "retry_task", task_id=ran["id"])
        assert again["retry_of"] == ran["id"] and again["id"] != ran["id"]
        listed = await ok(c, "list_tasks", agent="sh", limit=10)
        assert {t["id"] for t in listed["tasks"]} == {ran["id"], again["id"]}

        parked = await ok(
            c, "create_task", agent="sh", queue="idle", prompt="p", parameters={"script": "true"}
        )
        assert "No worker is live on queue 'idle'" in parked["note"]
        cancelled = await ok(c, "cancel_task", task_id=parked["id"])
        assert cancelled["status"] == "cancelled"
        assert (await ok(c, "list_tasks", status="cancelled"))["tasks"][0]["id"] == parked["id"]

        resource = await c.read_resource(f"task://{ran['id']}")
        body = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
        assert body["task"]["status"] == "completed"
        assert any(e["text"] == "out" for e in body["events"])
        listing = await c.read_resource("agents://catalog")
        assert {a["name"] for a in json.loads(listing.contents[0].text)["agents"]} == {"greet", "sh"}  # type: ignore[union-attr]
        templates = (await c.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["task://{task_id}"]


async def test_flow_on_both_databases(plane: LiveServer, connect: Connect, tmp_path: Path) -> None:
    async with running_worker(plane.url, tmp_path / "ws"), connect("http", plane.url) as c:
        await ask_and_answer_flow(c, "2026-07-28")


async def test_stream_returns_at_the_timeout_with_the_seq_to_go_on_from(
    plane: LiveServer, connect: Connect, tmp_path: Path, shared_tmp: Path
) -> None:
    gate = shared_tmp / "gate"
    script = f'echo started; while [ ! -e "{gate}" ]; do sleep 0.05; done; echo after'
    async with running_worker(plane.url, tmp_path / "ws"), connect("inprocess", plane.url) as c:
        tid = (await ok(c, "create_task", agent="sh", prompt="p", parameters={"script": script}))["id"]
        for _ in range(60):  # bounded: each call returns within its 0.5 s timeout
            seen = await ok(c, "stream_task", task_id=tid, timeout=0.5)
            if "started" in [e["text"] for e in seen["events"]]:
                break
        assert seen["outcome"] == "timeout", seen
        assert seen["status"] == "running" and "after=" in seen["next_step"]
        gate.touch()
        rest = await ok(c, "stream_task", task_id=tid, after=seen["last_seq"], timeout=30)
        assert rest["outcome"] == "finished" and [e["text"] for e in rest["events"]][-2:] == [
            "after",
            "status: completed",
        ]
        assert rest["events"][0]["seq"] == seen["last_seq"] + 1


async def test_progress_is_reported_while_the_task_runs(
    plane: LiveServer, connect: Connect, tmp_path: Path, shared_tmp: Path
) -> None:
    """The output line arrives as a notification before the task is allowed to finish."""
    gate = shared_tmp / "gate"
    script = f'echo first; while [ ! -e "{gate}" ]; do sleep 0.05; done; echo second'
    progress = Progress(on_message={"first": gate.touch})
    async with running_worker(plane.url, tmp_path / "ws"), connect("http", plane.url) as c:
        tid = (await ok(c, "create_task", agent="sh", prompt="p", parameters={"script": script}))["id"]
        done = await call(c, "stream_task", progress, task_id=tid, timeout=30)
        assert not done.is_error and done.structured_content["status"] == "completed"  # type: ignore[index]
    assert progress.messages.index("first") < progress.messages.index("second")
