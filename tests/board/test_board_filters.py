"""Done when (issue 7) 4: filters in the URL reproduce the same board after a reload."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.board.helpers import RawWorker, create, setup_catalog
from tests.board.test_board_live import card
from tests.support import LiveServer


def visible_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all(".col:not([hidden]) li[data-id]", "els => els.map(e => e.dataset.id)")


def test_filters_live_in_the_url_and_survive_a_reload(board: Any, server: LiveServer) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c, agents=("web", "db"))
        deploy_web = create(c, "Deploy the web app", agent="web")
        create(c, "Restart the web cache", agent="web")
        create(c, "Deploy the database", agent="db")
        done = create(c, "Deploy web docs", agent="web")
        w = RawWorker(c)
        w.claim(deploy_web)  # oldest first: the claim takes the first task created
        c.post(f"/tasks/{deploy_web}/cancel")
        w.fail(deploy_web)

        # Set filters with the controls: agent, text, and two columns.
        page.get_by_label("Agent", exact=True).select_option("web")
        page.get_by_label("Search", exact=True).fill("deploy")
        page.get_by_role("checkbox", name="Pending").check()
        page.get_by_role("checkbox", name="Cancelled").check()
        expect(page).to_have_url(f"{server.url}/?status=pending%2Ccancelled&agent=web&q=deploy")
        expect(page.locator(".col:not([hidden])")).to_have_count(2)
        expect(card(page, "pending", done)).to_be_visible()
        expect(card(page, "cancelled", deploy_web)).to_be_visible()
        expect(page.locator(".col-pending .count")).to_have_text("1")
        before = sorted(visible_ids(page))
        assert before == sorted([done, deploy_web])

        # A live change that matches the filters shows up; one that does not, does not.
        fresh = create(c, "Deploy web again", agent="web")
        create(c, "Deploy the database again", agent="db")
        expect(card(page, "pending", fresh)).to_be_visible()
        expect(page.locator(".col-pending .count")).to_have_text("2")

        page.reload()
        expect(page.locator("#board[data-ready=true]")).to_be_attached()
        expect(page.get_by_label("Agent", exact=True)).to_have_value("web")
        expect(page.get_by_label("Search", exact=True)).to_have_value("deploy")
        expect(page.get_by_role("checkbox", name="Pending")).to_be_checked()
        expect(page.get_by_role("checkbox", name="Running")).not_to_be_checked()
        expect(page.locator(".col:not([hidden])")).to_have_count(2)
        expect(page.locator(".col-pending li[data-id]")).to_have_count(2)
        assert sorted(visible_ids(page)) == sorted([*before, fresh])

        # The same link in a fresh tab gives the same board.
        other = page.context.new_page()
        other.goto(page.url)
        expect(other.locator(".col-pending li[data-id]")).to_have_count(2)
        assert sorted(visible_ids(other)) == sorted([*before, fresh])
        other.get_by_role("button", name="Clear filters").click()
        expect(other).to_have_url(f"{server.url}/")
        expect(other.locator(".col-pending li[data-id]")).to_have_count(5)
