"""Socket Mode against the fake's websocket: `apps.connections.open` with the app token, the
`hello`, then envelopes (an event, a button press, a slash command), each acknowledged by
its envelope id; the same flow as over HTTP, with no public URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.fakes.llm_server import ChatLLM, FakeLLM, text, tool_call
from tests.fakes.slack_server import FakeSlack
from tests.integrations.slack_support import (
    block_action,
    button,
    event_body,
    mention,
    message_of,
    posted,
    text_of,
)
from tests.meta_agent.test_agent_chat import last_task
from tests.support import wait_for
from tests.worker.llm_support import llm_agent, worker_thread


def _acked(slack: FakeSlack, envelope_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: next((a for a in slack.acks if a.get("envelope_id") == envelope_id), None),
        20,
        f"the ack of {envelope_id}",
    )


def test_socket_mode_mention_task_question_button_result(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane(slack_app_token="xapp-test", slack_signing_secret=None)
    wait_for(lambda: slack.socket_connects, 20, "the websocket connection")
    [opened] = slack.calls_to("apps.connections.open")
    assert opened.token == "xapp-test"  # the app token opens the socket, not the bot token
    with httpx.Client() as http:  # no HTTP endpoint in Socket Mode
        assert http.post(plane.url + "/slack/events", content=b"{}").status_code == 404

    with plane.client() as c:
        llm_agent(c, "deployer", tools=["ask_user"], description="Deploys the app")
    llm.play(
        tool_call("create_task", {"agent": "deployer", "prompt": "deploy"}, say="Plan: deployer."),
        lambda body: text(f"Started: {last_task(body)['board_url']}"),
    )
    worker_llm.script(
        tool_call("ask_user", {"question": "Approve the rollout?", "choices": ["approve", "deny"]}),
        text("Rolled out."),
    )
    event = mention("U1", "deploy it")
    thread = event["ts"]
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        envelope = slack.socket_send("events_api", event_body(event))
        _acked(slack, envelope)
        question = wait_for(lambda: posted(slack, thread, "q"), 30, "the question")[0]
        approve = button(question, "approve")
        assert approve["style"] == "primary" and button(question, "deny")["style"] == "danger"
        press = slack.socket_send(
            "interactive", block_action("U1", message_of(question, question.result["ts"]), approve)
        )
        _acked(slack, press)
        result = wait_for(lambda: posted(slack, thread, "result"), 30, "the result")[0]
    assert "Rolled out." in text_of(result) and "/#/tasks/" in text_of(result)

    # The slash command over the socket: the answer rides on the ack.
    envelope = slack.socket_send(
        "slash_commands",
        {"command": "/meta-agent", "text": "tasks", "user_id": "U1", "channel_id": "C1", "team_id": "T1"},
    )
    ack = _acked(slack, envelope)
    assert ack["payload"]["text"] == "No running or waiting tasks."
