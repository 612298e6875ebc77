"""The meta agent over `POST /api/v1/chat`, end to end: a live control plane, an in-process
worker, and the fake OpenAI-compatible provider making the tool calls a real model would
make (the task ids it needs are read from the tool results it was sent, as a model would)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdk.client import AsyncControlPlaneClient
from tests.fakes.llm_server import ChatLLM, Reply, text, tool_call
from tests.support import LiveServer
from worker.main import Worker

K8S = {
    "name": "k8s-health",
    "description": "Checks the health of a Kubernetes cluster (read-only)",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["python3", "-c", "import sys; print('cluster healthy in', sys.argv[1])", "{namespace}"],
    "parameters": {"namespace": {"required": True, "description": "which namespace to check"}},
}
GREET = {
    "name": "greet",
    "description": "Greets someone by name",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["python3", "-c", "print('hello')"],
}


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON tool results in a request, oldest first (what the model has seen)."""
    out = []
    for m in body["messages"]:
        if m.get("role") == "tool":
            try:
                out.append(json.loads(m["content"]))
            except ValueError:
                out.append({"error": m["content"]})
    return out


def last_task(body: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in reversed(tool_results(body)) if "task_id" in r or "board_url" in r)


@pytest.fixture
def plane(server_factory: Any, db_url: str, llm: ChatLLM) -> LiveServer:
    srv: LiveServer = server_factory(
        db_url, model="openai/fake", llm_api_base=llm.api_base, llm_api_key="sk-test"
    )
    with srv.client() as c:
        assert c.post("/worker-queues", json={"name": "q1", "description": "test queue"}).status_code == 201
        for agent in (K8S, GREET):
            assert c.post("/agents", json=agent).status_code == 201, agent
    return srv


@asynccontextmanager
async def running_worker(url: str, workspace: Path) -> AsyncIterator[Worker]:
    async with AsyncControlPlaneClient(url, api_key="", timeout=10) as client:
        worker = Worker(client, "q1", workspace_root=workspace, heartbeat_interval=0.5, claim_wait=1)
        stop = asyncio.Event()
        run = asyncio.create_task(worker.run(stop))
        try:
            # Live once its first claim has registered it: the meta agent's list_queues must
            # see it (before, a fast chat could ask first and find no worker: a flaky test).
            async with asyncio.timeout(10):
                while (await client.queues.get("q1")).active_workers < 1:
                    await asyncio.sleep(0.02)
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(run, 20)


async def chat(url: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """POST /chat and read the SSE frames to the end: [(event, data)]."""
    frames: list[tuple[str, dict[str, Any]]] = []
    async with (
        httpx.AsyncClient(base_url=url + "/api/v1", timeout=60) as http,
        http.stream("POST", "/chat", json=body) as resp,
    ):
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                frames.append((event, json.loads(line[6:])))
    return frames


def of(frames: list[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [d for e, d in frames if e == kind]


PLAN = "Plan: run k8s-health on q1 to check the cluster health. Risk: read-only."


async def test_chat_picks_agent_and_queue_creates_follows_relays_and_reports(
    plane: LiveServer, llm: ChatLLM, tmp_path: Path
) -> None:
    def relay(body: dict[str, Any]) -> Reply:
        r = last_task(body)
        assert r["outcome"] == "needs_input", r
        return text(f"The task asks: {r['question']['question']} Which namespace should I check?")

    def report(body: dict[str, Any]) -> Reply:
        r = last_task(body)
        assert r["outcome"] == "finished" and r["status"] == "completed", r
        return text(f"Done: {r['result']['output'].strip()}. Board: {r['board_url']}")

    llm.play(
        tool_call("list_agents", {}),
        tool_call("list_queues", {}),
        tool_call(
            "create_task",
            {"agent": "k8s-health", "queue": "q1", "prompt": "check the cluster health"},
            say=PLAN,
        ),
        lambda body: tool_call("stream_task", {"task_id": last_task(body)["id"], "timeout": 30}),
        relay,
    )
    async with running_worker(plane.url, tmp_path / "ws"):
        first = await chat(
            plane.url, {"message": "check the cluster health", "source": "board", "requested_by": "ada"}
        )
        [start] = of(first, "conversation")
        [done] = of(first, "done")
        conv = done["conversation_id"]
        assert start["conversation_id"] == conv
        assert [c["name"] for c in of(first, "tool_call")] == [
            "list_agents",
            "list_queues",
            "create_task",
            "stream_task",
        ]
        [created] = of(first, "task")
        tid = created["task_id"]
        assert created["board_url"] == f"{plane.url}/#/tasks/{tid}"
        assert done["task_ids"] == [tid]
        assert PLAN in "".join(d["text"] for d in of(first, "text"))
        assert "Which namespace" in done["reply"]
        # The model saw the tools' real answers: the agents and the live queue.
        seen = tool_results(llm.requests[2])
        assert {a["name"] for a in seen[0]["agents"]} >= {"k8s-health", "greet"}
        assert seen[1]["queues"][0]["active_workers"] == 1

        # The person answers in the same conversation; the agent passes it back and reports.
        llm.play(
            tool_call("respond_to_task", {"task_id": tid, "answer": "prod"}),
            lambda body: tool_call("stream_task", {"task_id": tid, "timeout": 30}),
            report,
        )
        second = await chat(plane.url, {"message": "prod", "conversation_id": conv})
        [done2] = of(second, "done")
        assert done2["conversation_id"] == conv
        assert "cluster healthy in prod" in done2["reply"]
        assert f"{plane.url}/#/tasks/{tid}" in done2["reply"]
        # The second turn was sent the whole conversation, tool results included.
        assert any(m.get("content") == "check the cluster health" for m in llm.requests[5]["messages"])

    with plane.client() as c:
        task = c.get(f"/tasks/{tid}").json()
    assert task["status"] == "completed"
    assert task["agent"] == "k8s-health" and task["queue"] == "q1"
    assert task["source"] == "board" and task["requested_by"] == "ada"


async def test_conversation_survives_a_restart_and_retry_it_retries_the_right_task(
    server_factory: Any, db_url: str, llm: ChatLLM, tmp_path: Path
) -> None:
    settings = {"model": "openai/fake", "llm_api_base": llm.api_base, "llm_api_key": "sk-test"}
    first = server_factory(db_url, **settings)
    with first.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        assert c.post("/agents", json=GREET).status_code == 201
        other = c.post("/tasks", json={"agent": "greet", "prompt": "an unrelated task"}).json()["id"]
    llm.play(
        tool_call(
            "create_task", {"agent": "greet", "prompt": "say hello"}, say="Plan: run greet. Risk: none."
        ),
        lambda body: tool_call("stream_task", {"task_id": last_task(body)["id"], "timeout": 30}),
        lambda body: text(f"Greeted. {last_task(body)['board_url']}"),
    )
    async with running_worker(first.url, tmp_path / "ws"):
        frames = await chat(first.url, {"message": "greet the team", "source": "cli"})
    [done] = of(frames, "done")
    conv, [tid] = done["conversation_id"], done["task_ids"]
    first.stop()

    second = server_factory(db_url, **settings)

    def retry(body: dict[str, Any]) -> Reply:
        # "it" is the task this conversation created, found in the history sent to the model.
        created = next(r for r in tool_results(body) if "id" in r and "retry_of" in r)
        return tool_call("retry_task", {"task_id": created["id"]})

    llm.play(retry, lambda body: text(f"Retried as {last_task(body)['id']}."))
    frames = await chat(second.url, {"message": "retry it", "conversation_id": conv})
    [done] = of(frames, "done")
    assert done["conversation_id"] == conv
    [new] = done["task_ids"]
    with second.client() as c:
        task = c.get(f"/tasks/{new}").json()
    assert task["retry_of"] == tid != other
    assert task["source"] == "cli"


async def test_chat_without_a_model_names_the_setting(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url + "/api/v1") as http:
        r = await http.post("/chat", json={"message": "check the cluster health"})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "model_not_configured"
    assert "META_AGENT_MODEL" in problem["detail"]
    with server.client() as c:
        assert c.get("/tasks").json()["items"] == []  # the rest keeps working, and nothing was created


async def test_chat_with_an_unknown_conversation_is_404(plane: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=plane.url + "/api/v1") as http:
        r = await http.post("/chat", json={"message": "hi", "conversation_id": "nope"})
    assert r.status_code == 404 and r.json()["code"] == "conversation_not_found"
