"""Plans held for approval over `POST /chat` (the layer Slack uses too), and the bounds of a
chat: a live control plane, the fake OpenAI-compatible provider making the model's calls."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest

from meta_agent.conversation import _close_open_calls
from tests.fakes.llm_server import ChatLLM, Gate, Reply, text, tool_call
from tests.meta_agent.test_agent_chat import GREET, chat, last_task, of
from tests.support import LiveServer

RESTART = {
    "name": "restart-service",
    "description": "Restarts a production service (changes things)",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["python3", "-c", "print('restarted')"],
    "risky": True,
}
PLAN = "Plan: run restart-service on q1 to restart api. Risk: changes production."
CREATE = {"agent": "restart-service", "queue": "q1", "prompt": "restart the api service"}


def make_plane(server_factory: Any, db_url: str, llm: ChatLLM, **settings: Any) -> LiveServer:
    srv: LiveServer = server_factory(
        db_url, model="openai/fake", llm_api_base=llm.api_base, llm_api_key="sk-test", **settings
    )
    with srv.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        for agent in (RESTART, GREET):
            assert c.post("/agents", json=agent).status_code == 201, agent
    return srv


@pytest.fixture
def plane(server_factory: Any, db_url: str, llm: ChatLLM) -> LiveServer:
    return make_plane(server_factory, db_url, llm)


def tasks(srv: LiveServer) -> list[dict[str, Any]]:
    with srv.client() as c:
        return c.get("/tasks").json()["items"]  # type: ignore[no-any-return]


async def held_plan(plane: LiveServer, llm: ChatLLM) -> tuple[str, dict[str, Any]]:
    """A first turn whose plan runs a risky agent: it ends waiting for approval."""
    llm.play(tool_call("create_task", CREATE, say=PLAN))
    frames = await chat(plane.url, {"message": "restart the api", "requested_by": "ada"})
    [approval] = of(frames, "approval")
    [done] = of(frames, "done")
    assert {"type": "approval", **done["approval"]} == approval and done["task_ids"] == []
    assert approval["tool"] == "create_task" and approval["arguments"] == CREATE
    assert PLAN in approval["plan"]
    assert len(llm.requests) == 1  # the turn stopped at the plan: no model call after it
    assert tasks(plane) == []  # nothing runs before the person decides
    return done["conversation_id"], approval


async def test_risky_plan_waits_for_approval_then_runs_when_approved(plane: LiveServer, llm: ChatLLM) -> None:
    conv, approval = await held_plan(plane, llm)

    llm.play(lambda body: text(f"Started {last_task(body)['id']}: {last_task(body)['board_url']}"))
    decision = {"approval_id": approval["approval_id"], "approve": True}
    frames = await chat(plane.url, {"conversation_id": conv, "decision": decision})
    [created] = of(frames, "task")
    [done] = of(frames, "done")
    assert done["task_ids"] == [created["task_id"]] and done["approval"] is None
    assert created["board_url"] in done["reply"]
    [task] = tasks(plane)
    assert task["agent"] == "restart-service" and task["prompt"] == "restart the api service"
    assert task["source"] == "board" and task["requested_by"] == "ada"
    # The model was told who approved, and saw the created task as its own call's result.
    said = [m.get("content") for m in llm.requests[-1]["messages"] if m["role"] == "user"]
    assert any(s and s.startswith("Approved") for s in said)

    # The plan is decided: the same decision again is refused and runs nothing twice.
    async with httpx.AsyncClient(base_url=plane.url + "/api/v1") as http:
        r = await http.post("/chat", json={"conversation_id": conv, "decision": decision})
    assert r.status_code == 409 and r.json()["code"] == "approval_not_pending"
    assert len(tasks(plane)) == 1


async def test_a_plain_no_rejects_the_plan_and_the_model_is_told(plane: LiveServer, llm: ChatLLM) -> None:
    conv, _ = await held_plan(plane, llm)
    llm.play(text("Understood, I did not restart anything."))
    frames = await chat(plane.url, {"conversation_id": conv, "message": "no, not during business hours"})
    [done] = of(frames, "done")
    assert done["task_ids"] == [] and "did not restart" in done["reply"]
    said = [m.get("content") for m in llm.requests[-1]["messages"] if m["role"] == "user"]
    assert any(s and s.startswith("Rejected") and "business hours" in s for s in said)
    assert tasks(plane) == []


async def test_a_plain_yes_approves(plane: LiveServer, llm: ChatLLM) -> None:
    conv, _ = await held_plan(plane, llm)
    llm.play(text("Started."))
    frames = await chat(plane.url, {"conversation_id": conv, "message": "yes"})
    assert len(of(frames, "task")) == 1
    assert len(tasks(plane)) == 1


async def test_harmless_agents_and_approvals_never_do_not_wait(
    server_factory: Any, db_url: str, llm: ChatLLM
) -> None:
    srv = make_plane(server_factory, db_url, llm, approvals="never")
    llm.play(tool_call("create_task", CREATE, say=PLAN), text("Started."))
    frames = await chat(srv.url, {"message": "restart the api"})
    assert of(frames, "approval") == [] and len(of(frames, "task")) == 1


async def test_approvals_always_holds_even_a_harmless_plan(
    server_factory: Any, db_url: str, llm: ChatLLM
) -> None:
    srv = make_plane(server_factory, db_url, llm, approvals="always")
    llm.play(tool_call("create_task", {"agent": "greet", "prompt": "hi"}, say="Plan: greet."))
    frames = await chat(srv.url, {"message": "greet"})
    assert len(of(frames, "approval")) == 1 and tasks(srv) == []


async def test_bad_chat_bodies_are_4xx_and_change_nothing(plane: LiveServer, llm: ChatLLM) -> None:
    conv, approval = await held_plan(plane, llm)
    bad = [
        ({}, 422),
        ({"message": "hi", "decision": {"approval_id": "x", "approve": True}, "conversation_id": conv}, 422),
        ({"decision": {"approval_id": approval["approval_id"], "approve": True}}, 422),  # no conversation
        ({"conversation_id": conv, "decision": {"approval_id": "apr_wrong", "approve": True}}, 409),
        ({"message": "hi", "source": "carrier-pigeon"}, 422),
    ]
    async with httpx.AsyncClient(base_url=plane.url + "/api/v1") as http:
        for body, status in bad:
            r = await http.post("/chat", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.headers["content-type"] == "application/problem+json"
    assert tasks(plane) == [] and len(llm.requests) == 1
    # The held plan is still there to decide.
    llm.play(text("Started."))
    frames = await chat(plane.url, {"conversation_id": conv, "decision": {**approval, "approve": True}})
    assert len(of(frames, "task")) == 1


async def test_one_key_runs_a_bounded_number_of_turns(server_factory: Any, db_url: str, llm: ChatLLM) -> None:
    srv = make_plane(server_factory, db_url, llm, max_chat_turns_per_key=1)
    entered, release = threading.Event(), threading.Event()

    def slow(body: dict[str, Any]) -> Reply:
        entered.set()
        release.wait(30)
        return text("done thinking")

    llm.play(slow)
    first = asyncio.create_task(chat(srv.url, {"message": "think hard"}))
    assert await asyncio.to_thread(entered.wait, 30)
    try:
        async with httpx.AsyncClient(base_url=srv.url + "/api/v1") as http:
            r = await http.post("/chat", json={"message": "and this too"})
        assert r.status_code == 429 and r.json()["code"] == "too_many_streams"
    finally:
        release.set()
    [done] = of(await asyncio.wait_for(first, 30), "done")
    assert done["reply"] == "done thinking"
    llm.play(text("now there is room"))  # the slot was given back
    [done] = of(await chat(srv.url, {"message": "again"}), "done")
    assert done["reply"] == "now there is room"


def test_a_cut_off_turn_is_stored_with_every_tool_call_answered() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "a"}, {"id": "b"}]}
    messages = [
        {"role": "user", "content": "go"},
        call,
        {"role": "tool", "tool_call_id": "a", "content": "ok"},
    ]
    closed = _close_open_calls(messages)
    assert closed[:3] == messages
    assert closed[3] == {"role": "tool", "tool_call_id": "b", "content": "(interrupted)"}
    # Already whole: unchanged.
    assert _close_open_calls(closed) == closed


async def test_the_reply_streams_to_the_chat_while_the_model_still_writes(
    plane: LiveServer, llm: ChatLLM
) -> None:
    gate = Gate()  # the fake model stops halfway through its answer until the test opens it
    llm.play(text("The cluster has three nodes and all of them report ready right now.", gate=gate))
    seen: list[str] = []
    async with (
        httpx.AsyncClient(base_url=plane.url + "/api/v1", timeout=60) as http,
        http.stream("POST", "/chat", json={"message": "how is the cluster?"}) as resp,
    ):
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("data: ") and '"type":"text"' in line:
                seen.append(json.loads(line[6:])["text"])
                if not gate._event.is_set():
                    # Words arrived while the model is held mid-answer: streamed, not batched.
                    assert gate.reached.is_set()
                    gate.open()
            if line.startswith("event: done"):
                break
    assert "".join(seen) == "The cluster has three nodes and all of them report ready right now."
    assert gate._event.is_set()  # opened by the test, on the first words it saw
