"""The relay across restarts: the thread gets every remaining update once, none twice.

The control plane stops while a Slack-bound task waits for input; the task moves on while
it is down (answered on the board); a new control plane on the same database picks the
binding up from `last_seq` and finishes the thread's story: the question marked answered,
the same progress message updated, one result post.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from store import slack as slack_store
from store import tasks as task_service
from store.db import Database
from tests.fakes.llm_server import ChatLLM, FakeLLM, text, tool_call
from tests.fakes.slack_server import FakeSlack
from tests.integrations.slack_support import (
    CHANNEL,
    block_action,
    mention,
    message_of,
    posted,
    press,
    reply,
    send_event,
    text_of,
)
from tests.meta_agent.test_agent_chat import K8S, last_task
from tests.support import LiveServer, wait_for
from tests.worker.llm_support import worker_thread


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _answer_on_the_board(db_url: str, task_id: str, answer: str) -> None:
    db = Database(db_url)
    try:
        async with db.tx() as tx:
            await task_service.respond(tx, task_id, answer, by="ada")
    finally:
        await db.dispose()


async def _binding(db_url: str, task_id: str) -> Any:
    db = Database(db_url)
    try:
        async with db.read() as s:
            return await slack_store.get_binding(s, task_id)
    finally:
        await db.dispose()


def _start_task(
    plane: LiveServer, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> tuple[str, str]:
    """A mention whose task runs until it asks its question; (thread ts, task id)."""
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
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        assert send_event(plane, event).status_code == 200
        wait_for(lambda: posted(slack, event["ts"], "q"), 30, "the question")
        wait_for(lambda: slack.calls_to("reactions.remove"), 30, "the end of the turn")
    with plane.client() as c:
        [task] = c.get("/tasks").json()["items"]
    return event["ts"], task["id"]


def test_restart_mid_task_resumes_the_relay_without_duplicates_or_gaps(
    start_plane: Any, slack_db: str, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane()
    thread, task_id = _start_task(plane, slack, llm, worker_llm, tmp_path)
    [progress] = posted(slack, thread, "progress")
    pts = progress.result["ts"]
    wait_for(
        lambda: (b := _run(_binding(slack_db, task_id))) and b.posts.get("question"),
        30,
        "the question recorded",
    )
    plane.stop()
    before = len(slack.calls)

    # While no control plane runs, the task moves on (answered on the board).
    _run(_answer_on_the_board(slack_db, task_id, "prod"))
    binding = _run(_binding(slack_db, task_id))
    assert binding.status == "active" and binding.lease_owner is None  # released at the stop

    plane2 = start_plane()
    with worker_thread(plane2.url, worker_llm, tmp_path / "ws2"):
        result = wait_for(lambda: posted(slack, thread, "result"), 30, "the result after the restart")[0]
    assert "cluster healthy in prod" in text_of(result)

    after = slack.calls[before:]
    # Once each: no second question, no second progress message, one result.
    assert [c for c in after if c.method == "chat.postMessage"] == [result]
    assert len(posted(slack, thread, "q")) == 1 and len(posted(slack, thread, "progress")) == 1
    # Nothing missing: the answer given while down is shown on the question...
    qts = posted(slack, thread, "q")[0].result["ts"]
    answered = [c for c in after if c.method == "chat.update" and c.args["ts"] == qts]
    assert len(answered) == 1 and "ada (on the board) answered *prod*" in text_of(answered[0])
    # ...and the same progress message (same ts, same thread) now says completed.
    ups = [c for c in after if c.method == "chat.update" and c.args["ts"] == pts]
    assert ups and "completed" in text_of(ups[-1]) and all(u.args["channel"] == CHANNEL for u in ups)
    binding = _run(_binding(slack_db, task_id))
    assert binding.status == "done"
    with httpx.Client(base_url=plane2.url + "/api/v1") as c:
        assert binding.last_seq == c.get(f"/tasks/{task_id}").json()["last_seq"]


def test_a_post_made_just_before_a_crash_is_found_not_repeated(
    start_plane: Any, slack_db: str, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    """Crash between "post" and "record it": the intent was recorded first; on the next start
    the relay finds the message by its metadata in the thread and does not post it again."""
    plane = start_plane()
    thread, task_id = _start_task(plane, slack, llm, worker_llm, tmp_path)
    wait_for(
        lambda: (b := _run(_binding(slack_db, task_id))) and b.posts.get("question"),
        30,
        "the question recorded",
    )
    plane.stop()
    [question] = posted(slack, thread, "q")
    key = question.args["metadata"]["event_payload"]["post"]

    async def forget_the_record() -> None:  # as if the process died right after posting
        db = Database(slack_db)
        try:
            async with db.tx() as tx:
                b = await slack_store.get_binding(tx.session, task_id)
                assert b is not None
                await slack_store.lease(tx, task_id, "crashed", 30)
            async with db.tx() as tx:
                # Back to before the question's event was taken in, with only the intent kept.
                await slack_store.save(
                    tx,
                    task_id,
                    "crashed",
                    posts={**b.posts, key: {"pending": True}},
                    last_seq=b.last_seq - 2,
                    lease_owner=None,
                    lease_until=None,
                )
        finally:
            await db.dispose()

    _run(forget_the_record())
    plane2 = start_plane()
    wait_for(lambda: slack.calls_to("conversations.replies"), 30, "the relay to look for its post")
    assert send_event(plane2, reply("U1", "prod", thread)).status_code == 200
    with worker_thread(plane2.url, worker_llm, tmp_path / "ws2"):
        wait_for(lambda: posted(slack, thread, "result"), 30, "the result")
    assert len(posted(slack, thread, "q")) == 1  # found, not posted again
    assert len(posted(slack, thread, "result")) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # replicas share a PostgreSQL
def test_two_replicas_one_relay_and_requests_on_either(
    start_plane: Any, slack_db: str, slack: FakeSlack, llm: ChatLLM, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    """Behind a load balancer Slack's requests land on any replica: the answer goes to B
    while one relay (woken through LISTEN/NOTIFY) follows the task; every post is made once."""
    a = start_plane()
    b = start_plane()
    thread, task_id = _start_task(a, slack, llm, worker_llm, tmp_path)
    question = posted(slack, thread, "q")[0]
    assert send_event(b, reply("U1", "prod", thread)).status_code == 200  # lands on B
    with worker_thread(a.url, worker_llm, tmp_path / "ws2"):
        result = wait_for(lambda: posted(slack, thread, "result"), 30, "the result")[0]
    assert "cluster healthy in prod" in text_of(result)
    for key in ("progress", "q", "result"):
        assert len(posted(slack, thread, key)) == 1, key
    # A late press for the answered question, on either replica, changes nothing.
    late = {"action_id": "meta_agent_answer_0", "value": json.dumps({"t": task_id, "s": 1, "a": "staging"})}
    assert press(a, block_action("U1", message_of(question, question.result["ts"]), late)).status_code == 200
    note = wait_for(lambda: slack.calls_to("chat.postEphemeral"), 30, "the 'already answered' note")[0]
    assert note.args["text"] == "That question was already answered."
    with httpx.Client(base_url=b.url + "/api/v1") as c:
        assert c.get(f"/tasks/{task_id}").json()["status"] == "completed"
