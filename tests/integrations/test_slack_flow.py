"""Slack end to end over HTTP mode: signed events and button presses to `/slack/events` on a
live control plane, the meta agent behind it (fake provider making the tool calls a model
would), a real worker running the task, and the fake Slack recording what was posted."""

from __future__ import annotations

import itertools
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
    posted,
    press,
    reply,
    send_event,
    text_of,
)
from tests.meta_agent.test_agent_chat import K8S, last_task
from tests.support import wait_for
from tests.worker.llm_support import llm_agent, worker_thread

PLAN = "Plan: run deployer on q1 to deploy the app. Risk: changes the deployment."


def _one(calls: list[Any], what: str) -> Any:
    assert len(calls) == 1, f"{what}: {len(calls)} posts"
    return calls[0]


def test_mention_creates_task_relays_progress_question_button_answer_and_result(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane(slack_update_interval=1.0)  # the default throttle: updates ≥ 1 s apart
    with plane.client() as c:
        llm_agent(c, "deployer", tools=["ask_user", "save_artifact"], description="Deploys the app")
    llm.play(
        tool_call("create_task", {"agent": "deployer", "queue": "q1", "prompt": "deploy the app"}, say=PLAN),
        lambda body: text(f"Created the task: {last_task(body)['board_url']}"),
    )
    worker_llm.script(
        tool_call("ask_user", {"question": "Which environment?", "choices": ["staging", "production"]}),
        tool_call("save_artifact", {"name": "deploy.log", "content": "rolled out 3/3 pods\n"}),
        text("Deployed to production."),
    )
    event = mention("U1", "deploy the app")
    thread = event["ts"]
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        r = send_event(plane, event)
        assert r.status_code == 200, r.text
        # The bot shows it is working, and its reply (the plan) lands in the thread.
        wait_for(lambda: slack.calls_to("reactions.add"), 30, "the working reaction")
        assert slack.calls_to("reactions.add")[0].args == {
            "channel": CHANNEL,
            "timestamp": thread,
            "name": "eyes",
        }
        # The question comes with a button per choice, in the same thread.
        question = wait_for(lambda: posted(slack, thread, "q"), 30, "the question")[0]
        assert "Which environment?" in text_of(question)
        production = button(question, "production")
        qts = question.result["ts"]

        r = press(plane, block_action("U1", message_of(question, qts), production))
        assert r.status_code == 200, r.text
        result = wait_for(lambda: posted(slack, thread, "result"), 30, "the result post")[0]

    with plane.client() as c:
        task_id = c.get("/tasks", params={"source": "slack"}).json()["items"][0]["id"]
        task = c.get(f"/tasks/{task_id}").json()
    assert task["status"] == "completed" and task["requested_by"] == "U1"
    board = f"{plane.url}/#/tasks/{task_id}"
    assert "Deployed to production." in text_of(result) and board in text_of(result)

    # The reply: posted in the thread, with the plan and the link the model gave.
    replies = [c for c in slack.posts(thread_ts=thread) if not c.args.get("metadata")]
    assert replies and PLAN in replies[0].args["text"]
    wait_for(
        lambda: (
            board in slack.messages[CHANNEL][0]["text"]
            or any(board in c.args.get("text", "") for c in slack.calls_to("chat.update"))
        ),
        30,
        "the reply's final text",
    )

    # Progress: ONE message, posted once in the thread and then updated in place.
    progress = _one(posted(slack, thread, "progress"), "progress")
    pts = progress.result["ts"]
    updates = [c for c in slack.calls_to("chat.update") if c.args["ts"] == pts]
    assert updates, "the progress message was never updated"
    assert all(u.args["channel"] == CHANNEL for u in updates)
    assert "completed" in text_of(updates[-1])
    # The question was answered: the message says who answered what, buttons gone.
    answered = wait_for(
        lambda: [c for c in slack.calls_to("chat.update") if c.args["ts"] == qts],
        30,
        "the answered question",
    )
    assert "<@U1> answered *production*" in text_of(answered[-1])
    assert "button" not in text_of(answered[-1])
    # The task's artifact, uploaded into the thread (files.uploadV2: URL, bytes, complete).
    wait_for(lambda: slack.calls_to("files.completeUploadExternal"), 30, "the artifact upload")
    [upload] = slack.calls_to("upload")
    assert slack.uploads[upload.args["file_id"]] == b"rolled out 3/3 pods\n"
    [complete] = slack.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == CHANNEL and complete.args["thread_ts"] == thread
    assert complete.args["files"][0]["title"] == "deploy.log"
    # Every relay post exactly once.
    _one(posted(slack, thread, "q"), "question")
    _one(posted(slack, thread, "result"), "result")
    # The worker's model got the answer as the ask_user result.
    tool_msgs = [m for m in worker_llm.requests[-1]["messages"] if m["role"] == "tool"]
    assert any("production" in str(m.get("content")) for m in tool_msgs), tool_msgs


def test_reply_streams_as_one_message_updated_at_most_once_a_second(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM
) -> None:
    """The reply grows over the turn (text, a tool call, more text): one message, posted
    once and updated in place, the updates at least the interval (1 s) apart."""
    plane = start_plane(slack_update_interval=1.0)
    llm.play(
        tool_call("list_agents", {}, say="Let me look at the agents."),
        tool_call("list_queues", {}, say=" And the queues."),
        text(" There are no agents yet."),
    )
    event = mention("U1", "what can you run?")
    send_event(plane, event)
    first = wait_for(lambda: slack.posts(thread_ts=event["ts"]), 30, "the reply")[0]
    assert first.args["text"].startswith("Let me look at the agents.")
    ts = wait_for(lambda: first.result.get("ts"), 30, "the post's ts")

    def updates() -> list[Any]:
        ups = [c for c in slack.calls_to("chat.update") if c.args["ts"] == ts]
        return ups if ups and ups[-1].args["text"].endswith("no agents yet.") else []

    ups = wait_for(updates, 30, "the whole reply")
    assert ups[-1].args["text"] == "Let me look at the agents. And the queues. There are no agents yet."
    assert len(slack.posts(thread_ts=event["ts"])) == 1  # one message, updated in place
    times = [first.at] + [c.at for c in ups]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(times)), times


def test_thread_reply_answers_and_outsiders_cannot(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane()
    with plane.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        assert c.post("/agents", json=K8S).status_code == 201
    llm.play(
        tool_call(
            "create_task", {"agent": "k8s-health", "prompt": "check the cluster"}, say="Plan: k8s-health."
        ),
        lambda body: text(f"On it: {last_task(body)['board_url']}"),
    )
    event = mention("U1", "check the cluster health")
    thread = event["ts"]
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        assert send_event(plane, event).status_code == 200
        question = wait_for(lambda: posted(slack, thread, "q"), 30, "the question")[0]
        assert "namespace" in text_of(question)
        with plane.client() as c:
            task_id = c.get("/tasks").json()["items"][0]["id"]

        # Someone who is not in the conversation replies: no answer, and they are told why.
        assert send_event(plane, reply("U_OUT", "kube-system", thread)).status_code == 200
        wait_for(lambda: slack.calls_to("chat.postEphemeral"), 30, "the refusal")
        assert slack.calls_to("chat.postEphemeral")[0].args["user"] == "U_OUT"
        with plane.client() as c:
            assert c.get(f"/tasks/{task_id}").json()["status"] == "requires_input"
        # Nor can they press a button of this conversation's task (a retry, say).
        # The person who asked replies in the thread: that answers it.
        assert send_event(plane, reply("U1", "prod", thread)).status_code == 200
        result = wait_for(lambda: posted(slack, thread, "result"), 30, "the result")[0]
    assert "cluster healthy in prod" in text_of(result)
    with plane.client() as c:
        task = c.get(f"/tasks/{task_id}").json()
    assert task["status"] == "completed"
    qts = question.result["ts"]
    answered = [c for c in slack.calls_to("chat.update") if c.args["ts"] == qts]
    assert answered and "<@U1> answered *prod*" in text_of(answered[-1])


def test_allow_list_decides_who_may_answer(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    """With META_AGENT_SLACK_ALLOWED_USERS, only those people answer, even in their own thread."""
    plane = start_plane(slack_allowed_users="U1,U2")
    with plane.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        assert c.post("/agents", json=K8S).status_code == 201
    llm.play(
        tool_call("create_task", {"agent": "k8s-health", "prompt": "check"}, say="Plan."),
        text("On it."),
    )
    event = mention("U1", "check the cluster")
    thread = event["ts"]
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        send_event(plane, event)
        wait_for(lambda: posted(slack, thread, "q"), 30, "the question")
        send_event(plane, reply("U3", "nope", thread))  # not on the list
        wait_for(lambda: slack.calls_to("chat.postEphemeral"), 30, "the refusal")
        send_event(plane, reply("U2", "staging", thread))  # on the list, though not in the thread
        result = wait_for(lambda: posted(slack, thread, "result"), 30, "the result")[0]
    assert "cluster healthy in staging" in text_of(result)


def test_no_model_configured_says_so_in_the_thread(start_plane: Any, slack: FakeSlack) -> None:
    plane = start_plane(model=None)
    event = mention("U1", "hello")
    assert send_event(plane, event).status_code == 200
    post = wait_for(lambda: slack.posts(thread_ts=event["ts"]), 30, "the explanation")[0]
    assert "META_AGENT_MODEL" in post.args["text"]
    with httpx.Client(base_url=plane.url + "/api/v1") as c:
        assert c.get("/tasks").json()["items"] == []
