"""Keyboard use, the dark theme and a narrow screen."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.board.helpers import create, setup_catalog
from tests.board.test_board_live import card
from tests.support import LiveServer


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_keyboard_theme_and_narrow_screen(board: Any, server: LiveServer) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c)
        tid = create(c, "Reachable by keyboard")
    link = card(page, "pending", tid).locator("a")
    expect(link).to_be_visible()

    # A card is a link: focus + Enter opens it, the panel takes focus, Escape returns it.
    link.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#panel-title")).to_be_focused()
    tabs = page.get_by_role("tab")
    page.get_by_role("tab", name="Overview").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Live Output")).to_have_attribute("aria-selected", "true")
    expect(tabs).to_have_count(5)
    page.keyboard.press("Escape")
    expect(page.locator("#panel")).to_be_hidden()
    expect(link).to_be_focused()

    # Dark theme: follows the system, and the toggle wins and is remembered.
    page.emulate_media(color_scheme="dark")
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(15, 18, 22)"
    toggle = page.locator("#theme")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(245, 246, 248)"

    # Narrow screen: columns stack, nothing overflows sideways, the panel covers the screen.
    page.set_viewport_size({"width": 390, "height": 800})
    expect(card(page, "pending", tid)).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
    card(page, "pending", tid).locator("a").click()
    box = page.locator("#panel").bounding_box()
    assert box is not None and box["width"] == 390


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("width", [1400, 420])  # the panel beside the board, and over it
def test_an_open_panel_leaves_the_header_buttons_usable(board: Any, server: LiveServer, width: int) -> None:
    page = board
    page.set_viewport_size({"width": width, "height": 800})
    with server.client() as c:
        setup_catalog(c)
        tid = create(c, "Open me")
    card(page, "pending", tid).locator("a").click()
    expect(page.locator("#panel-title")).to_be_visible()

    # A trial click fails when another element (the panel) would receive it.
    page.get_by_role("button", name="New task").click(trial=True, timeout=3000)
    expect(page.locator("#panel-title")).to_be_visible()  # and the panel's own head is not hidden
    page.get_by_role("button", name="New task").click()
    expect(page.get_by_role("dialog")).to_be_visible()
