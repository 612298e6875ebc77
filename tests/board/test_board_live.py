"""Done when (issue 7) 1: cards move Pending → Running → Completed live; the detail shows
the streamed output and the tool calls with their statuses."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from playwright.sync_api import expect

from tests.board.helpers import RawWorker, create, setup_catalog
from tests.support import LiveServer


def card(page: Any, status: str, task_id: str) -> Any:
    return page.locator(f".col-{status} li[data-id='{task_id}']")


def test_card_moves_live_and_detail_streams_output_and_tool_calls(board: Any, server: LiveServer) -> None:
    page = board
    page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads
    with server.client() as c:
        setup_catalog(c)
        tid = create(c, "Check the cluster health\nsecond line of the prompt", requested_by="ada")
        expect(card(page, "pending", tid)).to_contain_text("Check the cluster health")
        expect(card(page, "pending", tid)).to_contain_text("ada")
        expect(page.locator(".col-pending .count")).to_have_text("1")

        w = RawWorker(c)
        w.claim(tid)
        expect(card(page, "running", tid)).to_be_visible()
        expect(card(page, "pending", tid)).to_have_count(0)
        expect(page.locator(".col-pending .count")).to_have_text("0")
        expect(page.locator(".col-running .count")).to_have_text("1")

        w.events(
            tid,
            ("message_delta", {"delta": "Looking at **the nodes** first.\n\n- node-a"}),
            ("message_delta", {"delta": " ok\n- node-b <img src=x onerror=window.__xss=1>"}),
            ("tool_started", {"tool_call_id": "call-1", "tool": "kubectl", "args": {"cmd": "get nodes"}}),
            ("tool_output", {"tool_call_id": "call-1", "output": "node-a Ready\n"}),
            (
                "tool_completed",
                {
                    "tool_call_id": "call-1",
                    "tool": "kubectl",
                    "output": "node-a Ready",
                    "duration_seconds": 1.5,
                },
            ),
            ("tool_started", {"tool_call_id": "call-2", "tool": "bash", "args": {"command": "df -h"}}),
            phase="executing",
        )
        # The running card shows the phase and the tool being called right now.
        expect(card(page, "running", tid).locator(".phase")).to_have_text("executing")
        expect(card(page, "running", tid).locator(".tool")).to_contain_text("bash")

        card(page, "running", tid).locator("a").click()
        expect(page).to_have_url(f"{server.url}/#/tasks/{tid}")
        panel = page.locator("#panel")
        expect(panel.locator("h2#panel-title")).to_have_text("Check the cluster health")
        panel.get_by_role("tab", name="Live Output").click()
        expect(page).to_have_url(f"{server.url}/#/tasks/{tid}/output")
        output = panel.locator("#tp-output")
        expect(output.locator("strong")).to_have_text("the nodes")
        expect(output.locator("li")).to_have_count(2)
        # Agent text is never HTML: the tag shows as text and nothing runs.
        expect(output).to_contain_text("<img src=x onerror=window.__xss=1>")
        assert output.locator("img").count() == 0

        panel.get_by_role("tab", name="Tool Calls").click()
        calls = panel.locator("#tp-tools .toolcall")
        expect(calls).to_have_count(2)
        expect(calls.nth(0)).to_contain_text("kubectl")
        expect(calls.nth(0)).to_contain_text("Success")
        expect(calls.nth(0)).to_contain_text("1.5s")
        expect(calls.nth(1)).to_contain_text("Running")

        # More output streams in while the panel is open.
        w.events(
            tid,
            ("tool_completed", {"tool_call_id": "call-2", "tool": "bash", "error": "df: permission denied"}),
            ("message_delta", {"delta": "Disk check failed; "}),
            ("message_delta", {"delta": "reporting."}),
            ("message", {"text": "Disk check failed; reporting."}),
        )
        expect(calls.nth(1)).to_contain_text("Failed")
        calls.nth(1).locator("summary").click()
        expect(calls.nth(1)).to_contain_text("df: permission denied")
        expect(calls.nth(0)).to_contain_text('"cmd": "get nodes"')
        panel.get_by_role("tab", name="Live Output").click()
        expect(output.locator(".message").nth(1)).to_have_text("Disk check failed; reporting.")

        w.complete(tid, {"healthy": False})
        expect(card(page, "completed", tid)).to_be_visible()
        expect(card(page, "running", tid)).to_have_count(0)
        expect(page.locator(".col-completed .count")).to_have_text("1")
        expect(panel.locator(".panel-head .pill")).to_have_text("Completed")

        # Logs: every event, filterable by kind.
        panel.get_by_role("tab", name="Logs").click()
        logs = panel.locator("#tp-logs .logs li:visible")
        expect(logs).to_have_count(c.get(f"/tasks/{tid}").json()["last_seq"])
        panel.get_by_label("Event kind").select_option("tool_started")
        expect(logs).to_have_count(2)

        # Escape closes the panel and the URL goes back to the board.
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
    assert page.evaluate("window.__sameDocument === true && window.__xss === undefined")


async def _change_behind_the_boards_back(db_url: str, running: str) -> str:
    """While the server is down: finish one task and create another, straight in the store."""
    from store import tasks
    from store.db import Database
    from store.leases import Lease

    db = Database(db_url)
    try:
        async with db.tx() as tx:
            (claimed,) = await tasks.claim_tasks(tx, "q1", "offline-worker", 1, 60)
            assert claimed.task.id == running
            await tasks.complete(tx, running, Lease(claimed.token), result=None)
            fresh = await tasks.create_task(tx, tasks.NewTask(prompt="Created while offline", agent="helper"))
        return fresh.id
    finally:
        await db.dispose()


def test_reconnect_after_the_server_drops_catches_up(board: Any, server: LiveServer, db_url: str) -> None:
    page = board
    page.evaluate("window.__sameDocument = true")
    with server.client() as c:
        setup_catalog(c)
        first = create(c, "Before the outage")
    expect(card(page, "pending", first)).to_be_visible()
    server.server.force_exit = True  # do not wait for the page's open streams
    server.stop()
    expect(page.locator("#live")).to_have_text("reconnecting…")
    # Playwright's sync API owns this thread's event loop: run the store calls on another.
    with ThreadPoolExecutor(1) as pool:
        fresh = pool.submit(asyncio.run, _change_behind_the_boards_back(db_url, first)).result(30)
    again = LiveServer(server.settings)
    again.start()
    try:
        # The stream's first event after a reconnect is a full snapshot: the board catches up.
        expect(page.locator("#live")).to_have_text("live")
        expect(card(page, "completed", first)).to_be_visible()
        expect(card(page, "pending", fresh)).to_contain_text("Created while offline")
        expect(page.locator(".col-pending .count")).to_have_text("1")
        assert page.evaluate("window.__sameDocument === true")
    finally:
        again.server.force_exit = True
        again.stop()


def test_finished_columns_page_in_on_scroll(board: Any, server: LiveServer, db_url: str) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c)
        ids = [create(c, f"Task {i}") for i in range(75)]
        w = RawWorker(c)
        for tid in ids:
            w.claim(tid)
            w.complete(tid)
    page.reload()
    cards = page.locator(".col-completed li[data-id]")
    expect(page.locator(".col-completed .count")).to_have_text("75")
    expect(cards).to_have_count(30)  # the snapshot
    cards.last.scroll_into_view_if_needed()
    expect(cards).to_have_count(50)  # a page from /tasks?status=completed
    cards.last.scroll_into_view_if_needed()
    expect(cards).to_have_count(75)  # the next, with its cursor
    got = page.eval_on_selector_all(".col-completed li[data-id]", "els => els.map(e => e.dataset.id)")
    assert got == sorted(ids, reverse=True)  # newest first, no duplicates, no gaps


def test_a_column_past_the_count_cap_shows_a_lower_bound(
    board: Any, server: LiveServer, monkeypatch: Any
) -> None:
    import store.tasks

    monkeypatch.setattr(store.tasks, "BOARD_COUNT_CAP", 3)  # the server runs in this process
    with server.client() as c:
        setup_catalog(c)
        for i in range(5):
            create(c, f"task {i}")
    board.reload()
    # Counted up to the cap (3), then raised to the cards on screen (5); still "at least".
    expect(board.locator(".col-pending .count")).to_have_text("5+")
    expect(board.locator(".col-pending .count")).to_have_attribute("aria-label", "5+ tasks")
    expect(board.locator(".col-completed .count")).to_have_text("0")
