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
