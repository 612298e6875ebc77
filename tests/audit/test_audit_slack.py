"""Slack actions in the audit log (SQLite and PostgreSQL): a plan approved with the button
and a task cancelled with `/meta-agent cancel` are recorded as the Slack user who did it;
a refused cancel records nothing."""

from __future__ import annotations

from typing import Any

from tests.fakes.llm_server import ChatLLM, text, tool_call
from tests.fakes.slack_server import FakeSlack
from tests.integrations.slack_support import block_action, button, mention, message_of, press, send_event
from tests.integrations.test_slack_actions import REPORT, _catalog, _command
from tests.meta_agent.test_agent_chat import last_task
from tests.support import wait_for


def test_slack_approval_and_cancel_are_recorded_as_the_slack_user(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM
) -> None:
    plane = start_plane()
    _catalog(plane, {**REPORT, "risky": True})
    llm.play(
        tool_call("create_task", {"agent": "report", "prompt": "write it"}, say="Plan: run report."),
        text("Waiting for your approval."),
        lambda body: text(f"Approved and started: {last_task(body)['board_url']}"),
    )
    event = mention("U1", "write the report")
    send_event(plane, event)
    ask = wait_for(
        lambda: [
            c for c in slack.posts(thread_ts=event["ts"]) if "Approve this plan?" in c.args.get("text", "")
        ],
        30,
        "the approval request",
    )[0]
    wait_for(lambda: ask.result.get("ts"), 30, "its ts")
    press(plane, block_action("U1", message_of(ask, ask.result["ts"]), button(ask, "Approve")))
    with plane.client() as c:
        (task,) = wait_for(lambda: c.get("/tasks").json()["items"], 30, "the approved task")
        approved = wait_for(
            lambda: c.get("/audit", params={"action": "plan.*"}).json()["items"], 30, "the decision recorded"
        )
        assert [(e["action"], e["actor"], e["actor_kind"], e["source"]) for e in approved] == [
            ("plan.approve", "slack:U1", "slack", "slack")
        ]
        assert (
            approved[0]["target_kind"] == "conversation" and approved[0]["details"]["tool"] == "create_task"
        )
        (created,) = c.get("/audit", params={"action": "task.create"}).json()["items"]
        assert created["source"] == "slack" and created["details"]["requested_by"] == "U1"

        assert _command(plane, f"cancel {task['id']}", user="U_OUT").text.startswith("You can cancel")
        assert _command(plane, f"cancel {task['id']}").text.startswith("Task")
        (cancel,) = c.get("/audit", params={"action": "task.cancel"}).json()["items"]
    assert (cancel["actor"], cancel["actor_kind"], cancel["source"], cancel["target_id"]) == (
        "slack:U1",
        "slack",
        "slack",
        task["id"],
    )
