"""The MCP Apps views in Chromium, inside the test host (host.html), against a live control plane:
the task card follows a real task live and answers, cancels and retries it; the board counts
the columns and acts on its cards. Every read and action is a tools/call through the host to
the real `/mcp` (the `page` fixture fails on any other request, and on any CSP violation).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.board.helpers import RawWorker, create
from tests.mcpapps.bridge import HostBridge
from tests.support import LiveServer, wait_for


def open_view(page: Any, host: HostBridge, tool: str, arguments: dict[str, Any]) -> Any:
    """The host calls `tool` and renders its view; the view's frame, once it is running."""
    page.goto(host.host_url(tool, arguments))
    expect(page.locator("#host-status")).to_have_text(
        "rendering ui://meta-agent/" + ("task-card.html" if tool == "stream_task" else "board.html")
    )
    return page.frame_locator("#view")


def status_of(c: Any, tid: str) -> str:
    return str(c.get(f"/tasks/{tid}").json()["status"])


def test_card_follows_a_task_live_and_answers_its_question(
    page: Any, host: HostBridge, plane: LiveServer
) -> None:
    with plane.client() as c:
        tid = create(c, "Check the disks")
        card = open_view(page, host, "stream_task", {"task_id": tid, "timeout": 1})
        expect(card.locator("#status")).to_have_text("pending")
        expect(card.locator("#title")).to_contain_text("Check the disks")
        # The view told the host its size (ui/notifications/size-changed), and the host used it.
        expect(page.locator("#view")).to_have_attribute("style", re.compile(r"height: \d+px"))
        assert host.called("tools/call", "stream_task")  # the model's own call opened the card

        w = RawWorker(c)
        w.claim(tid)
        w.events(
            tid,
            ("message_delta", {"delta": "Looking at "}),
            ("message_delta", {"delta": "<b>sda</b> now"}),
            ("tool_started", {"tool_call_id": "c1", "tool": "df", "args": {"path": "/"}}),
            phase="executing",
        )
        expect(card.locator("#status")).to_have_text("running")
        expect(card.locator("#phase")).to_have_text("phase: executing")
        # The reply is text, never markup.
        expect(card.locator("#reply")).to_have_text("Looking at <b>sda</b> now")
        expect(card.locator("#log")).to_contain_text("started df")

        w.ask(tid, "Which disk should I clean?")
        expect(card.locator("#status")).to_have_text("requires input")
        expect(card.locator("#question")).to_contain_text("Which disk should I clean?")
        card.locator("#answer").fill("sdb")
        card.locator("#send").click()
        wait_for(lambda: status_of(c, tid) == "pending", what="the task to resume after the answer")
        events = c.get(f"/tasks/{tid}/events").json()["items"]
        assert any(e["kind"] == "input_received" for e in events), events
        expect(card.locator("#status")).to_have_text("pending")
        expect(card.locator("#question")).to_be_empty()
        assert host.called("tools/call", "respond_to_task")
        assert host.called("resources/read", f"task://{tid}")

        w.claim(tid)
        w.ask(tid, "Empty the trash too?", ["yes", "no"])
        card.get_by_role("button", name="no", exact=True).click()  # a question with choices: one button each
        wait_for(lambda: status_of(c, tid) == "pending", what="the task to resume after the choice")
        w.claim(tid)
        w.complete(tid, {"cleaned": "sdb"})
        expect(card.locator("#status")).to_have_text("completed")
        expect(card.locator("#result")).to_contain_text('"cleaned": "sdb"')
        expect(card.locator("#cancel")).to_be_hidden()
        expect(card.locator("#retry")).to_be_hidden()


def test_card_cancels_then_retries_and_follows_the_new_task(
    page: Any, host: HostBridge, plane: LiveServer
) -> None:
    with plane.client() as c:
        tid = create(c, "Rotate the logs")
        card = open_view(page, host, "stream_task", {"task_id": tid, "timeout": 1})
        expect(card.locator("#status")).to_have_text("pending")
        expect(card.locator("#retry")).to_be_hidden()

        card.locator("#cancel").click()
        wait_for(lambda: status_of(c, tid) == "cancelled", what="the task to be cancelled")
        expect(card.locator("#status")).to_have_text("cancelled")
        expect(card.locator("#cancel")).to_be_hidden()

        card.locator("#retry").click()
        retried = wait_for(
            lambda: [t for t in c.get("/tasks").json()["items"] if t["retry_of"] == tid],
            what="the retry task",
        )
        new_id = retried[0]["id"]
        expect(card.locator("#meta")).to_contain_text(new_id)
        expect(card.locator("#status")).to_have_text("pending")
        assert host.called("tools/call", "cancel_task") and host.called("tools/call", "retry_task")


def test_board_counts_columns_live_and_acts_on_cards(page: Any, host: HostBridge, plane: LiveServer) -> None:
    with plane.client() as c:
        w = RawWorker(c)
        running = create(c, "running one")
        w.claim(running)
        asking = create(c, "asking one")
        w.claim(asking)
        w.ask(asking, "Proceed with the upgrade?")
        waiting = create(c, "waiting one")
        stopped = create(c, "stopped one")
        assert c.post(f"/tasks/{stopped}/cancel").status_code == 200

        board = open_view(page, host, "list_tasks", {"limit": 20})
        expect(board.locator("#board[data-ready=true]")).to_be_attached()

        def count(status: str) -> Any:
            return board.locator(f".column[data-status={status}] .count")

        for status, n in [
            ("pending", 1),
            ("running", 1),
            ("requires_input", 1),
            ("completed", 0),
            ("cancelled", 1),
        ]:
            expect(count(status)).to_have_text(str(n))
        expect(board.locator(f"li[data-id='{waiting}']")).to_contain_text("waiting one")

        w.complete(running, {"ok": True})  # live: the board moves the card by itself
        expect(count("running")).to_have_text("0")
        expect(count("completed")).to_have_text("1")

        ask_card = board.locator(f"li[data-id='{asking}']")
        ask_card.get_by_role("button", name="Answer…").click()
        expect(ask_card.locator(".question-text")).to_have_text("Proceed with the upgrade?")
        ask_card.get_by_label("Your answer").fill("yes")
        ask_card.get_by_role("button", name="Answer", exact=True).click()
        wait_for(lambda: status_of(c, asking) == "pending", what="the answered task to resume")
        expect(count("requires_input")).to_have_text("0")

        board.locator(f"li[data-id='{waiting}']").get_by_role("button", name="Cancel").click()
        wait_for(lambda: status_of(c, waiting) == "cancelled", what="the board's cancel")
        board.locator(f"li[data-id='{stopped}']").get_by_role("button", name="Retry").click()
        wait_for(
            lambda: any(t["retry_of"] == stopped for t in c.get("/tasks").json()["items"]),
            what="the board's retry",
        )
        expect(count("cancelled")).to_have_text("2")


def refused_and_said(view: Any, host: HostBridge, cancel: Any, read: str) -> None:
    """`cancel` clicked with the host's viewer key: the view says why it was refused, and
    still does after refreshing twice (`read`: the second read's call means the first one
    has answered), which succeed."""
    cancel.click()
    expect(view.locator("#error")).to_contain_text("operator scope")

    def refreshed_twice() -> bool:
        after = host.calls[host.calls.index(("tools/call", "cancel_task")) :]
        return after.count(("tools/call", read)) >= 2

    wait_for(refreshed_twice, 15, f"the view to {read} twice after the refused cancel")
    expect(view.locator("#error")).to_contain_text("operator scope")


@pytest.mark.parametrize("host", ["viewer"], indirect=True)
def test_a_viewer_keys_board_says_why_its_cancel_was_refused(
    page: Any, host: HostBridge, plane: LiveServer
) -> None:
    with plane.client(headers={"Authorization": f"Bearer {host.keys['admin']}"}) as c:
        tid = create(c, "Drain the node")
        board = open_view(page, host, "list_tasks", {"limit": 20})
        cancel = board.locator(f"li[data-id='{tid}']").get_by_role("button", name="Cancel")
        refused_and_said(board, host, cancel, "list_tasks")
        assert status_of(c, tid) == "pending"


@pytest.mark.parametrize("host", ["viewer"], indirect=True)
def test_a_viewer_keys_card_shows_the_task_but_cannot_cancel_it(
    page: Any, host: HostBridge, plane: LiveServer
) -> None:
    with plane.client(headers={"Authorization": f"Bearer {host.keys['admin']}"}) as c:
        tid = create(c, "Drain the node")
        card = open_view(page, host, "stream_task", {"task_id": tid, "timeout": 1})
        expect(card.locator("#status")).to_have_text("pending")
        # The view's action is the host's tool call, with the host's key: refused, and said so.
        refused_and_said(card, host, card.locator("#cancel"), "get_task")
        assert status_of(c, tid) == "pending"
        expect(card.locator("#status")).to_have_text("pending")
