"""Slack API errors (rate limits, a channel gone), the Retry button, plan approvals and the
`/meta-agent` slash command."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.llm_server import ChatLLM, FakeLLM, text, tool_call
from tests.fakes.slack_server import FakeSlack
from tests.integrations.slack_support import (
    CHANNEL,
    block_action,
    button,
    mention,
    message_of,
    post_signed,
    posted,
    press,
    send_event,
    text_of,
)
from tests.meta_agent.test_agent_chat import K8S, last_task
from tests.support import LiveServer, wait_for
from tests.worker.llm_support import worker_thread

BROKEN = {
    "name": "disk-check",
    "description": "Checks free disk space",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["python3", "-c", "import sys; print('df: /data is 99% full'); sys.exit(3)"],
}
REPORT = {
    "name": "report",
    "description": "Writes a report file",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["python3", "-c", "print('report written')"],
}


def _catalog(plane: LiveServer, *agents: dict[str, Any]) -> None:
    with plane.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        for agent in agents:
            assert c.post("/agents", json=agent).status_code == 201


def _mention_creating(plane: LiveServer, llm: ChatLLM, agent: str, prompt: str = "go") -> str:
    llm.play(
        tool_call("create_task", {"agent": agent, "prompt": prompt}, say=f"Plan: {agent}."),
        lambda body: text(f"On it: {last_task(body)['board_url']}"),
    )
    event = mention("U1", prompt)
    assert send_event(plane, event).status_code == 200
    return str(event["ts"])


def test_rate_limits_are_waited_out_and_failures_offer_retry(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane()
    _catalog(plane, BROKEN)
    # Slack says "slow down" to the first progress post: the client waits Retry-After, retries.
    slack.fail("chat.postMessage", "ratelimited", status=429, retry_after=1)
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        thread = _mention_creating(plane, llm, "disk-check", "check the disks")
        result = wait_for(lambda: posted(slack, thread, "result"), 30, "the failure")[0]
        limited = [c for c in slack.calls_to("chat.postMessage") if c.result.get("ts") is None]
        assert limited, "the rate-limited call was not made"
        assert "failed" in text_of(result) and "exit" in text_of(result).lower()
        retry = button(result, "Retry")

        # Retry, pressed by the person who asked: a new task, followed in the same thread.
        r = press(plane, block_action("U1", message_of(result, result.result["ts"]), retry))
        assert r.status_code == 200
        wait_for(lambda: len(posted(slack, thread, "result")) == 2, 30, "the retried task's result")
    with plane.client() as c:
        tasks = c.get("/tasks").json()["items"]
    assert len(tasks) == 2 and tasks[0]["retry_of"] == tasks[1]["id"]
    assert tasks[0]["source"] == "slack" and tasks[0]["requested_by"] == "U1"
    assert len(posted(slack, thread, "progress")) == 2  # one progress message per task
    # The Retry button is gone from the first result, which says who retried.
    updated = [c for c in slack.calls_to("chat.update") if c.args["ts"] == result.result["ts"]]
    assert updated and "<@U1> retried it" in text_of(updated[-1]) and "Retry" not in text_of(updated[-1])


def test_outsiders_cannot_retry(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane()
    _catalog(plane, BROKEN)
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        thread = _mention_creating(plane, llm, "disk-check")
        result = wait_for(lambda: posted(slack, thread, "result"), 30, "the failure")[0]
    press(plane, block_action("U_OUT", message_of(result, result.result["ts"]), button(result, "Retry")))
    refusal = wait_for(lambda: slack.calls_to("chat.postEphemeral"), 30, "the refusal")[0]
    assert refusal.args["user"] == "U_OUT"
    with plane.client() as c:
        assert len(c.get("/tasks").json()["items"]) == 1


def test_channel_gone_marks_the_binding_failed_and_the_service_lives_on(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path, caplog: Any
) -> None:
    plane = start_plane()
    _catalog(plane, REPORT)
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        # Every post from now on fails: the bot was removed from the channel.
        slack.fail("chat.postMessage", "channel_not_found", times=1000)
        thread = _mention_creating(plane, llm, "report")

        def failed_binding() -> Any:
            with plane.client() as c:
                items = c.get("/tasks").json()["items"]
            return items and _binding_status(plane, items[0]["id"]) == "failed"

        wait_for(failed_binding, 30, "the binding to be marked failed")
        wait_for(lambda: slack.calls_to("reactions.remove"), 30, "the end of the turn")
    assert "channel_not_found" in caplog.text
    with httpx.Client() as http:
        assert http.get(plane.url + "/healthz").status_code == 200
    # The service still takes events.
    assert send_event(plane, mention("U2", "hello", channel="C2")).status_code == 200
    assert thread


def _binding_status(plane: LiveServer, task_id: str) -> str | None:
    import asyncio

    from store import slack as slack_store
    from store.db import Database

    async def read() -> str | None:
        db = Database(plane.settings.database_url)
        try:
            async with db.read() as s:
                b = await slack_store.get_binding(s, task_id)
            return None if b is None else b.status
        finally:
            await db.dispose()

    return asyncio.run(read())


def _command(plane: LiveServer, text: str, user: str = "U1") -> httpx.Response:
    form = {
        "command": "/meta-agent",
        "text": text,
        "user_id": user,
        "channel_id": CHANNEL,
        "team_id": "T1",
        "token": "verification-token",
        "response_url": "https://hooks.slack.invalid/commands/1",
        "trigger_id": "t1",
    }
    return post_signed(plane, urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded")


def test_slash_command_lists_cancels_and_starts_conversations(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane()
    _catalog(plane, K8S)
    r = _command(plane, "tasks")
    assert r.status_code == 200 and r.text == "No running or waiting tasks."

    # Free text: a new conversation, threaded under a message in the channel.
    llm.play(
        tool_call("create_task", {"agent": "k8s-health", "prompt": "check"}, say="Plan: k8s-health."),
        lambda body: text(f"On it: {last_task(body)['board_url']}"),
    )
    r = _command(plane, "check the cluster health")
    assert r.status_code == 200 and "thread" in r.text
    top = wait_for(
        lambda: [c for c in slack.posts(channel=CHANNEL) if not c.args.get("thread_ts")], 30, "the thread"
    )[0]
    assert top.args["text"] == "<@U1> asked: check the cluster health"
    thread = wait_for(lambda: top.result.get("ts"), 30, "its ts")
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        wait_for(lambda: posted(slack, thread, "q"), 30, "the task's question in the thread")
    with plane.client() as c:
        [task] = c.get("/tasks").json()["items"]
    assert task["status"] == "requires_input" and task["source"] == "slack"

    listing = _command(plane, "tasks").text
    assert task["id"] in listing and "requires input" in listing

    refused = _command(plane, f"cancel {task['id']}", user="U_OUT").text
    assert refused.startswith("You can cancel")
    done = _command(plane, f"cancel {task['id']}").text
    assert done == f"Task `{task['id']}` is cancelled."
    result = wait_for(lambda: posted(slack, thread, "result"), 30, "the cancellation in the thread")[0]
    assert "cancelled" in text_of(result) and button(result, "Retry")
    assert "No task" in _command(plane, "cancel nope").text


def test_a_risky_plan_waits_for_approve_in_the_thread(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane()
    _catalog(plane, {**REPORT, "risky": True})
    llm.play(
        tool_call("create_task", {"agent": "report", "prompt": "write it"}, say="Plan: run report."),
        text("Waiting for your approval."),
        lambda body: text(f"Approved and started: {last_task(body)['board_url']}"),
    )
    event = mention("U1", "write the report")
    thread = event["ts"]
    send_event(plane, event)
    ask = wait_for(
        lambda: [c for c in slack.posts(thread_ts=thread) if "Approve this plan?" in c.args.get("text", "")],
        30,
        "the approval request",
    )[0]
    approve = button(ask, "Approve")
    wait_for(lambda: ask.result.get("ts"), 30, "its ts")
    # Someone outside the conversation cannot approve it.
    press(plane, block_action("U_OUT", message_of(ask, ask.result["ts"]), approve))
    wait_for(lambda: slack.calls_to("chat.postEphemeral"), 30, "the refusal")
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        press(plane, block_action("U1", message_of(ask, ask.result["ts"]), approve))
        result = wait_for(lambda: posted(slack, thread, "result"), 30, "the approved task's result")[0]
    assert "report written" in text_of(result)
    decided = [c for c in slack.calls_to("chat.update") if c.args["ts"] == ask.result["ts"]]
    assert decided and "<@U1> approved the plan" in text_of(decided[-1])
    assert json.dumps(decided[-1].args.get("blocks")).count("button") == 0
