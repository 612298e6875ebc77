"""Done when (issue 7) 2 and 3: answer a Requires Input question on the board and see the
task resume; cancel a running task and retry a failed one from the board. Also: create a
task from the board, and the operations view."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.board.helpers import RawWorker, create, setup_catalog
from tests.board.test_board_live import card
from tests.support import LiveServer, wait_for


def test_answering_a_question_on_the_board_resumes_the_task(board: Any, server: LiveServer) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c)
        tid = create(c, "Deploy my app")
        w = RawWorker(c)
        w.claim(tid)
        w.ask(tid, "Which environment?", ["staging", "production"])
        expect(card(page, "requires_input", tid).locator(".question")).to_have_text("Which environment?")

        card(page, "requires_input", tid).locator("a").click()
        answers = page.get_by_role("group", name="Answers")
        expect(answers.get_by_role("button")).to_have_text(["staging", "production"])
        answers.get_by_role("button", name="staging").click()
        # Resumed: back in Pending, waiting for a worker, with the answer stored.
        expect(card(page, "pending", tid)).to_be_visible()
        expect(page.locator("#panel .panel-head .pill")).to_have_text("Pending")
        expect(page.locator("#panel .answer")).to_be_hidden()
        resumed = w.claim(tid)
        assert resumed["inputs"] == {"answer": "staging"}
        expect(card(page, "running", tid)).to_be_visible()

        # A question without choices takes free text.
        w.ask(tid, "Any message for the release notes?")
        expect(card(page, "requires_input", tid)).to_be_visible()
        page.get_by_label("Your answer").fill("Ships the new board")
        page.get_by_role("button", name="Send answer").click()
        expect(card(page, "pending", tid)).to_be_visible()
        assert w.claim(tid)["inputs"] == {"answer": "Ships the new board"}


def test_cancel_a_running_task_and_retry_a_failed_one(board: Any, server: LiveServer) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c)
        running = create(c, "Long job")
        w = RawWorker(c)
        w.claim(running)
        expect(card(page, "running", running)).to_be_visible()
        page.goto(f"{server.url}/#/tasks/{running}")
        page.get_by_role("button", name="Cancel task").click()
        dialog = page.get_by_role("dialog", name="Cancel this task?")
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name="Keep it").click()  # confirmation really guards it
        expect(dialog).to_have_count(0)
        assert c.get(f"/tasks/{running}").json()["cancel_requested"] is False
        page.get_by_role("button", name="Cancel task").click()
        page.get_by_role("dialog").get_by_role("button", name="Cancel task").click()
        expect(page.locator("#panel .panel-head .pill")).to_have_text("Running · cancelling")
        expect(card(page, "running", running).locator(".badge")).to_have_text("cancelling…")
        # The worker hears about it on its next call and stops: the task ends cancelled.
        assert w.events(running, ("log", {"line": "stopping"}))["cancel_requested"] is True
        assert w.fail(running, "cancelled", "stopped on request")["status"] == "cancelled"
        expect(card(page, "cancelled", running)).to_be_visible()
        expect(page.get_by_role("button", name="Retry")).to_be_visible()

        failed = create(c, "Flaky job")
        w.claim(failed)
        w.fail(failed, "exit_code", "exit status 1")
        # An unlisted code is a tool error (kernel/failures.py): the class, the next step, the code.
        expect(card(page, "failed", failed).locator(".error .failure-class")).to_have_text("Tool error")
        expect(card(page, "failed", failed).locator(".error")).to_contain_text("(exit_code: exit status 1).")
        card(page, "failed", failed).locator("a").click()
        expect(page.locator("#panel .panel-head .pill")).to_have_text("Failed")
        page.get_by_role("button", name="Retry").click()
        # The retry is a new task; the panel follows it and its card appears in Pending.
        retry = wait_for(
            lambda: c.get("/tasks", params={"status": "pending"}).json()["items"], 10, "the retry"
        )[0]
        assert retry["retry_of"] == failed and retry["prompt"] == "Flaky job"
        expect(page).to_have_url(f"{server.url}/#/tasks/{retry['id']}")
        expect(card(page, "pending", retry["id"])).to_contain_text("retry")
        expect(card(page, "failed", failed)).to_be_visible()


def test_create_a_task_from_the_board_and_see_workers(board: Any, server: LiveServer) -> None:
    page = board
    with server.client() as c:
        setup_catalog(c, agents=("helper", "greeter"))
        c.patch(
            "/agents/greeter",
            json={"parameters": {"who": {"required": True, "description": "whom to greet"}}},
        )
        page.reload()
        page.get_by_role("button", name="New task").click()
        dialog = page.get_by_role("dialog", name="New task")
        dialog.get_by_label("Agent").select_option("greeter")
        dialog.get_by_label("Prompt").fill("Say hello")
        dialog.get_by_label("who").fill("Ada")
        dialog.get_by_label("Other parameters").fill('{"loud": true}')
        dialog.get_by_role("button", name="Create task").click()
        expect(dialog).to_have_count(0)
        task = c.get("/tasks").json()["items"][0]
        assert (task["agent"], task["prompt"], task["source"]) == ("greeter", "Say hello", "board")
        assert task["parameters"] == {"who": "Ada", "loud": True}
        expect(page).to_have_url(f"{server.url}/#/tasks/{task['id']}")
        expect(card(page, "pending", task["id"])).to_be_visible()

        RawWorker(c).claim(task["id"])
        page.get_by_role("link", name="Operations").click()
        queue = page.locator(".queue", has_text="q1")
        expect(queue.locator("table.workers")).to_contain_text("raw-worker")
        expect(queue.locator("table.workers")).to_contain_text("test-host")
        expect(page.locator("#view-board")).to_be_hidden()
