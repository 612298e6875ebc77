"""The board's chat drawer talks to the meta agent (`POST /chat`) in Chromium: the reply
streams in, the task it created links to its card, a risky plan waits for Approve, and
without a model the drawer says which setting to set."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.board.conftest import start_server
from tests.fakes.llm_server import ChatLLM, Reply, text, tool_call
from tests.support import LiveServer

GREET = {
    "name": "greet",
    "description": "Greets someone",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["true"],
}
RESTART = {**GREET, "name": "restart-service", "description": "Restarts a service", "risky": True}


@pytest.fixture
def server(db_url: str, tmp_path: Path, llm: ChatLLM) -> Iterator[LiveServer]:
    """This module's control plane has a model (the fake provider) behind /chat."""
    srv = start_server(
        db_url, tmp_path, model="openai/fake", llm_api_base=llm.api_base, llm_api_key="sk-test"
    )
    with srv.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        for agent in (GREET, RESTART):
            assert c.post("/agents", json=agent).status_code == 201
    yield srv
    srv.stop()


def created(body: dict[str, Any]) -> dict[str, Any]:
    return json.loads(next(m["content"] for m in reversed(body["messages"]) if m["role"] == "tool"))


def send(page: Any, message: str) -> None:
    page.locator("#chat-input").fill(message)
    page.locator("#chat-input").press("Enter")


def test_chat_creates_a_task_that_links_to_its_card(board: Any, llm: ChatLLM) -> None:
    def report(body: dict[str, Any]) -> Reply:
        return text(f"Started **greet** as {created(body)['id']}.")

    llm.play(
        tool_call("list_agents", {}),
        tool_call(
            "create_task", {"agent": "greet", "queue": "q1", "prompt": "greet the team"}, say="Plan: greet."
        ),
        report,
    )
    board.locator("#chat-open").click()
    expect(board.locator("#chat")).to_be_visible()
    send(board, "greet the team")
    chat = board.locator("#chat")
    expect(chat.locator(".msg.you")).to_have_text(re.compile("greet the team"))
    # The server's first model call imports litellm (seconds on a busy machine).
    expect(chat.locator(".note.tool").first).to_be_attached(timeout=60_000)
    expect(chat.locator(".note.tool").first).to_have_text("→ list_agents")
    link = chat.locator(".note.task a")
    expect(link).to_have_count(1)
    tid = link.inner_text()
    expect(chat.locator(".msg.agent").last).to_contain_text(f"Started greet as {tid}")
    expect(chat.locator(".msg.agent strong").last).to_have_text("greet")  # markdown, rendered safely
    # The card is on the board, and the link opens its detail beside the chat.
    expect(board.locator(f".col-pending li[data-id='{tid}']")).to_be_visible()
    link.click()
    expect(board).to_have_url(re.compile(f"#/tasks/{tid}$"))
    expect(board.locator("#panel")).to_be_visible()
    # The conversation goes on after a reload (the id is kept in the tab, the turns on the server).
    llm.play(text("Still here."))
    board.evaluate("location.hash = '#/'")  # the detail panel covers the header's buttons
    board.reload()
    board.locator("#chat-open").click()
    send(board, "are you there?")
    expect(board.locator("#chat .msg.agent").last).to_contain_text("Still here.")
    history = llm.requests[-1]["messages"]
    assert any(m.get("content") == "greet the team" for m in history)


def test_a_risky_plan_waits_for_approve(board: Any, llm: ChatLLM, server: LiveServer) -> None:
    llm.play(
        tool_call(
            "create_task",
            {"agent": "restart-service", "queue": "q1", "prompt": "restart api"},
            say="Plan: restart.",
        ),
        lambda body: text(f"Restarting: {created(body)['id']}"),
    )
    board.locator("#chat-open").click()
    send(board, "restart the api")
    approval = board.locator("#chat .note.approval")
    expect(approval).to_be_attached(timeout=60_000)  # the first model call may import litellm
    expect(approval).to_contain_text("run restart-service on q1")
    expect(approval).to_contain_text("restart api")
    with server.client() as c:
        assert c.get("/tasks").json()["items"] == []  # nothing runs before the click
    approval.get_by_role("button", name="Approve").click()
    expect(approval).to_contain_text("Approved.")
    expect(board.locator("#chat .note.task a")).to_have_count(1)
    expect(board.locator("#chat .msg.agent").last).to_contain_text("Restarting:")
    with server.client() as c:
        [task] = c.get("/tasks").json()["items"]
    assert task["agent"] == "restart-service" and task["source"] == "board"


def test_without_a_model_the_chat_names_the_setting(page: Any, db_url: str, tmp_path: Path) -> None:
    srv = start_server(db_url, tmp_path)
    try:
        page.goto(srv.url + "/")
        page.locator("#chat-open").click()
        send(page, "check the cluster")
        expect(page.locator("#chat .note.error")).to_contain_text("META_AGENT_MODEL")
    finally:
        srv.stop()
