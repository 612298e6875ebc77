"""The board in real Chromium: the Schedules view (next run, last run linking to its task,
paused state, pause and resume), the scheduled task's card and detail, and the source filter."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.board.helpers import create, setup_catalog
from tests.board.test_board_live import card
from tests.schedules.helpers import make_due, schedule_body
from tests.support import LiveServer, wait_for


def test_schedules_view_pause_resume_and_the_scheduled_card(
    board: Any, server: LiveServer, db_url: str
) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c, agents=("reporter",))
        by_hand = create(c, "A task started by hand", agent="reporter")
        body = schedule_body("nightly-report", agent="reporter", prompt="Write the nightly report")
        assert c.post("/schedules", json=body).status_code == 201
        assert (
            c.post("/schedules", json=schedule_body("idle-one", agent="reporter", paused=True)).status_code
            == 201
        )
        make_due(db_url, "nightly-report")
        run = wait_for(lambda: c.get("/schedules/nightly-report").json()["last_task_id"], 10, "the run")

    # The run's card says it was scheduled; the source filter keeps only such tasks.
    expect(card(page, "pending", run).locator(".badge.scheduled")).to_be_visible()
    expect(card(page, "pending", run).locator(".source")).to_have_text("schedule")
    page.get_by_label("Source", exact=True).select_option("schedule")
    expect(page).to_have_url(f"{server.url}/?source=schedule")
    expect(card(page, "pending", run)).to_be_visible()
    expect(card(page, "pending", by_hand)).to_have_count(0)

    page.get_by_role("link", name="Schedules").click()
    view = page.locator("#view-schedules")
    expect(view).to_be_visible()
    expect(page.locator("#board")).to_be_hidden()
    row = page.locator("#schedule-nightly-report")
    expect(row.get_by_role("cell").nth(1)).to_have_text("0 8 * * 1-5")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row.locator("td.next time")).to_have_count(1)
    expect(row.locator("td.state")).to_have_text("active")
    expect(row.locator("td.last .pill")).to_have_text("Pending")
    expect(page.locator("#schedule-idle-one td.state")).to_have_text("paused")
    expect(page.locator("#schedule-idle-one td.next")).to_have_text("—")

    row.get_by_role("button", name="Pause schedule nightly-report").click()
    expect(row.locator("td.state")).to_have_text("paused")
    expect(row.locator("td.next")).to_have_text("—")
    with server.client() as c:
        assert c.get("/schedules/nightly-report").json()["paused"] is True
    row.get_by_role("button", name="Resume schedule nightly-report").click()
    expect(row.locator("td.state")).to_have_text("active")
    expect(row.locator("td.next time")).to_have_count(1)
    with server.client() as c:
        assert c.get("/schedules/nightly-report").json()["paused"] is False

    # The last run links to its task, whose overview names the schedule.
    row.locator("td.last a").click()
    expect(page).to_have_url(f"{server.url}/?source=schedule#/tasks/{run}")
    panel = page.locator("#panel")
    expect(panel).to_contain_text("Write the nightly report")
    expect(panel.locator("dl.overview")).to_contain_text("Schedule")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_viewer_sees_schedules_without_buttons_and_keyboard_keeps_focus(
    page: Any, server: LiveServer
) -> None:
    with server.client() as c:
        setup_catalog(c, agents=("reporter",))
        admin = c.post("/keys", json={"name": "admin-key", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"Authorization": f"Bearer {admin}"}) as c:
        viewer = c.post("/keys", json={"name": "viewer-key", "scopes": ["viewer"]}).json()["key"]
        assert (
            c.post("/schedules", json=schedule_body("weekly", agent="reporter", cron="0 9 * * 1")).status_code
            == 201
        )

    def sign_in(key: str) -> None:
        dialog = page.get_by_role("dialog", name="API key required")
        dialog.get_by_label("API key").fill(key)
        dialog.get_by_role("button", name="Sign in").click()
        expect(page.locator("#schedule-weekly")).to_be_visible()

    page.goto(server.url + "/#/schedules")
    sign_in(viewer)
    row = page.locator("#schedule-weekly")
    expect(row.locator("td.state")).to_have_text("active")
    expect(row.get_by_role("button")).to_have_count(0)

    page.evaluate("sessionStorage.clear()")  # sign out
    page.reload()
    sign_in(admin)
    # Keyboard: Enter on Pause pauses, and focus stays on the row's button (now Resume).
    row.get_by_role("button", name="Pause schedule weekly").focus()
    page.keyboard.press("Enter")
    expect(row.locator("td.state")).to_have_text("paused")
    expect(row.get_by_role("button", name="Resume schedule weekly")).to_be_focused()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_notify_column_says_where_runs_go_and_when_one_did_not(
    board: Any, server: LiveServer, db_url: str
) -> None:
    """No Slack on this control plane: the run starts, and its row says it was not posted."""
    page = board
    with server.client() as c:
        setup_catalog(c, agents=("reporter",))
        body = schedule_body("posted-report", agent="reporter", notify=["slack:#ops"])
        assert c.post("/schedules", json=body).status_code == 201
        assert c.post("/schedules", json=schedule_body("quiet", agent="reporter")).status_code == 201
    page.get_by_role("link", name="Schedules").click()
    row = page.locator("#schedule-posted-report")
    expect(row.locator("td.notify code")).to_have_text("slack:#ops")
    expect(row.locator("td.notify .notify-problem")).to_have_count(0)
    expect(page.locator("#schedule-quiet td.notify")).to_have_text("—")
    make_due(db_url, "posted-report")
    problem = row.locator("td.notify .notify-problem")
    expect(problem).to_have_text(" (not delivered)")
    expect(problem).to_have_attribute("title", re.compile(r"^not delivered: Slack is not configured"))
