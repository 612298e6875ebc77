"""The failure class on the board: the card says it in words with the next step, and the
Failure filter (in the URL, like the others) shows failed tasks of one class only."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from kernel import failures
from tests.board.helpers import RawWorker, create, setup_catalog
from tests.board.test_board_live import card
from tests.support import LiveServer


def test_cards_show_the_failure_class_and_the_filter_keeps_one_class(board: Any, server: LiveServer) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c)
        w = RawWorker(c)
        denied = create(c, "Clean the disk")
        w.claim(denied)
        w.fail(
            denied,
            "policy_violation",
            "policy rule deny_commands: the pattern `rm` blocks the command `rm -rf /`",
        )
        broke = create(c, "Build it")
        w.claim(broke)
        w.fail(broke, "command_failed", "exit code 2")

        policy_card = card(page, "failed", denied)
        expect(policy_card.locator(".failure-class")).to_have_text("Policy violation")
        expect(policy_card.locator(".error")).to_contain_text(
            "Check the agent's policy: rule `deny_commands` matched `rm -rf /`"
        )
        expect(card(page, "failed", broke).locator(".failure-class")).to_have_text("Tool error")

        options = page.eval_on_selector_all("#f-failure option", "os => os.map(o => o.value).filter(Boolean)")
        assert tuple(options) == failures.CLASSES  # the filter offers every class, in order
        page.get_by_label("Failure", exact=True).select_option("policy_violation")
        expect(page).to_have_url(f"{server.url}/?failure=policy_violation")
        expect(card(page, "failed", broke)).to_have_count(0)
        expect(policy_card).to_be_visible()
        expect(page.locator(".col-failed .count")).to_have_text("1")

        # Live: a new tool error stays off this board; a new policy violation shows up.
        other = create(c, "Build again")
        w.claim(other)
        w.fail(other, "command_failed", "exit code 1")
        again = create(c, "Clean again")
        w.claim(again)
        w.fail(again, "unsafe_command", "the template embeds a value")
        expect(card(page, "failed", again)).to_be_visible()
        expect(card(page, "failed", other)).to_have_count(0)

        page.reload()
        expect(page.get_by_label("Failure", exact=True)).to_have_value("policy_violation")
        expect(page.locator(".col-failed li[data-id]")).to_have_count(2)
