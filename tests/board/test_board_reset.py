"""A model call retried after its stream broke: the board drops the partial text it showed
(`message_reset`) instead of running the retried answer on after it."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.board.helpers import RawWorker, create, setup_catalog
from tests.support import LiveServer


def test_a_reset_clears_the_streamed_text_and_the_retry_streams_alone(board: Any, server: LiveServer) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c)
        tid = create(c, "Summarise the logs")
        w = RawWorker(c)
        w.claim(tid)
        w.events(tid, ("message_delta", {"text": "A first try that"}), phase="executing")
        page.goto(f"{server.url}/#/tasks/{tid}/output")
        output = page.locator("#panel #tp-output")
        expect(output.locator(".message")).to_have_text("A first try that")

        # As the worker sends them: the reset, the retry's log line, later the new text.
        w.events(
            tid,
            ("message_reset", {"reason": "model call failed (connection error)"}),
            ("log", {"level": "warning", "message": "retry 1 of 4 in 0.5 s"}),
        )
        expect(output.locator(".message")).to_have_count(0)
        w.events(tid, ("message_delta", {"text": "The clean answer"}))
        expect(output.locator(".message")).to_have_count(1)
        expect(output.locator(".message")).to_have_text("The clean answer")

        page.locator("#panel").get_by_role("tab", name="Logs").click()
        expect(page.locator("#panel .logs")).to_contain_text("partial answer discarded: model call failed")
