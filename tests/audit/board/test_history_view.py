"""The board in real Chromium: the History view lists the executions of a date range with
its filters, and Export downloads them with their events as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.board.helpers import RawWorker, create, setup_catalog
from tests.support import LiveServer


def test_history_lists_a_finished_task_in_range_and_exports_it(
    board: Any, server: LiveServer, tmp_path: Path
) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c, agents=("reporter", "other"))
        done = create(c, "Write the weekly report", agent="reporter")
        waiting = create(c, "Still waiting", agent="other")
        worker = RawWorker(c)
        worker.claim(done)
        worker.events(done, ("message", {"text": "the report is ready"}))
        worker.complete(done, {"ok": True})

    page.get_by_role("link", name="History").click()
    view = page.locator("#view-history")
    expect(view).to_be_visible()
    expect(page.locator("#board")).to_be_hidden()
    expect(page.locator(f"#history-{done}")).to_contain_text("Write the weekly report")
    expect(page.locator(f"#history-{done} .pill")).to_have_text("Completed")
    expect(page.locator(f"#history-{waiting}")).to_be_visible()

    view.get_by_label("Status", exact=True).select_option("completed")
    expect(page.locator(f"#history-{waiting}")).to_have_count(0)
    expect(page.locator(f"#history-{done}")).to_be_visible()
    view.get_by_label("Agent", exact=True).select_option("other")
    expect(view.get_by_role("status")).to_have_text("No executions in this range.")
    view.get_by_label("Agent", exact=True).select_option("reporter")
    expect(page.locator(f"#history-{done}")).to_be_visible()

    with page.expect_download() as got:
        view.get_by_role("button", name="Export JSONL").click()
    path = tmp_path / "export.jsonl"
    got.value.save_as(path)
    (item,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert item["task"]["id"] == done and item["task"]["status"] == "completed"
    assert "message" in [e["kind"] for e in item["events"]]

    # A range that ended before the task was created lists nothing.
    view.get_by_label("From", exact=True).fill("2020-01-01")
    view.get_by_label("To", exact=True).fill("2020-01-02")
    view.get_by_label("To", exact=True).dispatch_event("change")
    expect(view.get_by_role("status")).to_have_text("No executions in this range.")
    page.locator(f"#history-{done}").wait_for(state="detached")
