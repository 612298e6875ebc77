"""The plan the meta agent stated goes with the task it creates (`tasks.plan`), with who
approved it when approval was asked: `execution get` and the board's detail show it."""

from __future__ import annotations

from typing import Any

from tests.fakes.llm_server import ChatLLM, text, tool_call
from tests.meta_agent.test_agent_approvals import PLAN, held_plan, make_plane, tasks
from tests.meta_agent.test_agent_chat import chat, of
from tests.support import LiveServer


async def test_an_approved_plan_is_stored_with_its_approver(
    server_factory: Any, db_url: str, llm: ChatLLM
) -> None:
    plane: LiveServer = make_plane(server_factory, db_url, llm)
    conv, approval = await held_plan(plane, llm)
    llm.play(text("Started."))
    decision = {"approval_id": approval["approval_id"], "approve": True}
    frames = await chat(plane.url, {"conversation_id": conv, "decision": decision, "requested_by": "grace"})
    assert len(of(frames, "task")) == 1
    [task] = tasks(plane)
    assert task["plan"]["text"].startswith(PLAN)
    assert task["plan"]["text"] == f"{PLAN}\n\nApproved by grace."


async def test_a_plan_that_needs_no_approval_is_stored_as_said(
    server_factory: Any, db_url: str, llm: ChatLLM
) -> None:
    plane: LiveServer = make_plane(server_factory, db_url, llm, approvals="never")
    say = "Plan: run greet on q1. Risk: none (read-only)."
    llm.play(
        tool_call("create_task", {"agent": "greet", "prompt": "hi", "parameters": {"who": "x"}}, say=say),
        text("ok"),
    )
    frames = await chat(plane.url, {"message": "greet x"})
    assert len(of(frames, "task")) == 1
    [task] = tasks(plane)
    assert task["plan"] == {"text": say}
    # A task made without the meta agent has no plan.
    with plane.client() as c:
        other = c.post(
            "/tasks", json={"agent": "greet", "prompt": "direct", "parameters": {"who": "y"}}
        ).json()
    assert other["plan"] is None
