"""The detail panel (issue #16 items 5 and 7): it leaves the header's Chat and New task
buttons usable, and shows the plan, the steps, the environment and the result."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.board.helpers import create, setup_catalog
from tests.support import LiveServer


def hit(page: Any, selector: str) -> bool:
    """Whether a click at the centre of `selector` lands on it (nothing covers it)."""
    return bool(
        page.eval_on_selector(
            selector,
            """el => { const r = el.getBoundingClientRect();
                      const at = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                      return r.width > 0 && (at === el || el.contains(at)); }""",
        )
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("size", [(1400, 900), (900, 700), (390, 800)], ids=["wide", "medium", "phone"])
def test_the_open_panel_leaves_chat_and_new_task_clickable(
    board: Any, server: LiveServer, size: tuple[int, int]
) -> None:
    page = board
    page.set_viewport_size({"width": size[0], "height": size[1]})
    with server.client() as c:
        setup_catalog(c)
        tid = create(c, "Look at me")
    page.goto(f"{server.url}/#/tasks/{tid}")
    expect(page.locator("#panel")).to_be_visible()
    for button in ("#new-task", "#chat-open"):
        expect(page.locator(button)).to_be_visible()
        assert hit(page, button), f"{button} is covered at {size}"
    page.locator("#new-task").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Escape")
    page.locator("#chat-open").click()
    expect(page.locator("#chat")).to_be_visible()
    assert hit(page, "#new-task") and hit(page, "#chat-open")


def test_the_overview_shows_plan_steps_environment_and_text_output(board: Any, server: LiveServer) -> None:
    from tests.cli.test_execution_detail import PLAN, detailed_task

    page = board
    with server.client() as c:
        tid, child = detailed_task(c)
    page.goto(f"{server.url}/#/tasks/{tid}")
    overview = page.locator("#tp-overview")
    expect(overview.locator(".plan")).to_contain_text("Risk: changes the staging cluster.")
    expect(overview.locator(".plan")).to_contain_text("Approved by ada.")
    steps = overview.locator("ol.steps > li")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text("bash")
    expect(steps.nth(0)).to_contain_text("Success")
    expect(steps.nth(0)).to_contain_text("1.5s")  # the worker's duration_ms, not the events' timestamps
    expect(steps.nth(1)).to_contain_text("sub-task → checker")
    expect(steps.nth(1).locator("a")).to_have_attribute("href", f"#/tasks/{child}")
    expect(overview.locator("dd", has_text="stage-eu")).to_be_visible()
    expect(overview.locator("dd", has_text="w-42 on test-host")).to_be_visible()
    expect(overview.locator("dd", has_text="command")).to_be_visible()
    # A command's stdout as text in a <pre>: real line breaks, no JSON quoting or \n escapes.
    result = overview.locator("pre.result-text")
    expect(result).to_have_text("deployed web\ndeployed db\n")
    assert "\\n" not in result.inner_text() and '"' not in result.inner_text()
    assert PLAN.splitlines()[0] in overview.locator(".plan").inner_text()


def test_a_failed_task_says_its_class_in_words(board: Any, server: LiveServer) -> None:
    from tests.board.helpers import RawWorker

    page = board
    with server.client() as c:
        setup_catalog(c)
        tid = create(c, "Clean up")
        w = RawWorker(c)
        w.claim(tid)
        w.fail(
            tid,
            "policy_violation",
            "policy rule deny_commands: the pattern `rm` blocks the command `rm -rf /`",
        )
    page.goto(f"{server.url}/#/tasks/{tid}")
    failure = page.locator("#tp-overview .failure")
    expect(failure.locator("h3")).to_have_text("Failed: Policy violation")
    expect(failure.locator(".error")).to_have_text(
        "Check the agent's policy: rule `deny_commands` matched `rm -rf /` (pattern `rm`)."
    )
    expect(page.locator("#tp-overview ol.steps > li")).to_have_count(0)
