"""Done when (issue 16, prerequisites): a pending task blocked by prerequisites says so on
the board within a second of a worker's claim attempt, and a capable worker joining the
queue picks it up at once. Chromium, SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.board.test_board_live import card
from tests.prereqs.test_api import CAN, CANNOT, DEPLOYER, claim
from tests.support import LiveServer


def test_a_blocked_card_says_why_within_a_second_then_a_capable_worker_takes_it(
    board: Any, server: LiveServer
) -> None:
    page = board
    with server.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        assert c.post("/agents", json=DEPLOYER).status_code == 201
        tid = c.post("/tasks", json={"agent": "deployer", "prompt": "Roll out v2"}).json()["id"]
        pending = card(page, "pending", tid)
        expect(pending).to_contain_text("Roll out v2")
        expect(pending.locator(".waiting-for")).to_have_count(0)  # nobody tried yet

        assert claim(c, "w-small", capabilities=CANNOT) == []
        expect(pending.locator(".waiting-for")).to_have_text(
            "waiting: no worker on `q1` has `kubectl`, `KUBECONFIG`", timeout=1000
        )

        [got] = claim(c, "w-big", capabilities=CAN)  # joins the queue: its first claim takes it
        assert got["task"]["id"] == tid
        expect(card(page, "running", tid)).to_be_visible(timeout=1000)
        expect(card(page, "running", tid).locator(".waiting-for")).to_have_count(0)
