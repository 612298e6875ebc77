"""A schedule's `notify: slack:#ops`, end to end against the fake Slack Web API: each run posts
one root message in the channel and its progress and result in that message's thread, once,
across a restart, a crash between the root post and its record, and two replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from store import schedules
from store import slack as slack_store
from store.db import Database
from tests.board_api.test_api import seed
from tests.fakes.llm_server import FakeLLM
from tests.fakes.slack_server import Call, FakeSlack
from tests.integrations.slack_support import posted, text_of
from tests.schedules.helpers import make_due, schedule_body
from tests.support import ROOT, LiveServer, wait_for
from tests.worker.llm_support import worker_thread

OPS = "C0OPS"  # the fake's id of #ops


def roots(slack: FakeSlack) -> list[Call]:
    """Top-level posts that answered with the #ops channel (not replies in a thread)."""
    return [c for c in slack.posts() if not c.args.get("thread_ts") and c.result.get("channel") == OPS]


def create(plane: LiveServer, notify: str = "slack:#ops") -> dict[str, Any]:
    with plane.client() as c:
        seed(c)
        r = c.post("/schedules", json=schedule_body(notify=[notify]))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def schedule(plane: LiveServer) -> dict[str, Any]:
    with plane.client() as c:
        return c.get("/schedules/morning").json()  # type: ignore[no-any-return]


def binding(db_url: str, task_id: str) -> Any:
    async def read() -> Any:
        db = Database(db_url)
        try:
            async with db.read() as s:
                return await slack_store.get_binding(s, task_id)
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_a_scheduled_run_posts_a_root_message_and_its_progress_in_the_thread(
    start_plane: Any, slack_db: str, slack: FakeSlack, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane()
    made = create(plane)
    assert made["notify"] == ["slack:#ops"] and made["last_notify"] is None
    make_due(slack_db, "morning")
    [root] = wait_for(lambda: roots(slack), 30, "the root message")
    task_id = wait_for(lambda: schedule(plane)["last_task_id"], 10, "the run")
    assert root.args["channel"] == "#ops"  # posted by name; Slack answered with the id
    assert "Scheduled run of morning started" in text_of(root) and f"/#/tasks/{task_id}" in text_of(root)
    thread = root.result["ts"]
    with worker_thread(plane.url, worker_llm, tmp_path / "ws"):
        [result] = wait_for(lambda: posted(slack, thread, "result"), 30, "the result in the thread")
    assert result.args["channel"] == OPS and "completed" in text_of(result)
    assert len(posted(slack, thread, "progress")) == 1 and len(roots(slack)) == 1
    b = wait_for(lambda: (b := binding(slack_db, task_id)) and b.status == "done" and b, 10, "done")
    assert (b.channel, b.thread_ts, b.thread_key) == (OPS, thread, f"slack:T1:{OPS}:{thread}")
    assert schedule(plane)["last_notify"] == "posted"


def test_a_restart_goes_on_in_the_same_thread_without_a_second_root(
    start_plane: Any, slack_db: str, slack: FakeSlack, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    plane = start_plane()
    create(plane)
    make_due(slack_db, "morning")
    [root] = wait_for(lambda: roots(slack), 30, "the root message")
    thread = root.result["ts"]
    wait_for(lambda: posted(slack, thread, "progress"), 30, "the progress message (pending: no worker yet)")
    plane.stop()

    plane2 = start_plane()
    with worker_thread(plane2.url, worker_llm, tmp_path / "ws"):
        wait_for(lambda: posted(slack, thread, "result"), 30, "the result after the restart")
    assert len(roots(slack)) == 1 and len(posted(slack, thread, "progress")) == 1


def test_a_root_posted_just_before_a_crash_is_found_in_the_channel_not_repeated(
    start_plane: Any, slack_db: str, slack: FakeSlack, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    """The run fired and the root was posted, but the process died before recording it (only
    the intent is in `posts`): the next start looks in #ops's history, finds it by its
    metadata and threads under it."""
    plane = start_plane()
    create(plane)
    plane.stop()  # no relay from here on: the crash below is staged by hand

    async def fire_and_crash() -> str:
        db = Database(slack_db)
        try:
            make_due(slack_db, "morning")
            async with db.tx() as tx:
                [fired] = await schedules.fire_due(tx, deliver={"slack"})
            assert fired.task_id
            async with db.tx() as tx:
                b = await slack_store.lease(tx, fired.task_id, "crashed", 30)
                assert b is not None and b.thread_ts == ""
                await slack_store.save(
                    tx, fired.task_id, "crashed", posts={**b.posts, "root": {"pending": True}}
                )
            payload = {"task_id": fired.task_id, "post": "root"}
            async with httpx.AsyncClient() as http:  # the post the crashed relay made
                r = await http.post(
                    slack.api_base + "chat.postMessage",
                    json={
                        "channel": "#ops",
                        "text": "Scheduled run of morning started",
                        "metadata": {"event_type": "meta_agent_post", "event_payload": payload},
                    },
                )
                assert r.json()["ok"]
            async with db.tx() as tx:  # it died: its lease ran out
                await slack_store.save(tx, fired.task_id, "crashed", lease_owner=None, lease_until=None)
            return fired.task_id
        finally:
            await db.dispose()

    task_id = asyncio.run(fire_and_crash())
    [root] = roots(slack)
    plane2 = start_plane()
    with worker_thread(plane2.url, worker_llm, tmp_path / "ws"):
        wait_for(lambda: posted(slack, root.result["ts"], "result"), 30, "the result under the found root")
    assert roots(slack) == [root]  # found, not posted again
    assert slack.calls_to("conversations.list") and slack.calls_to("conversations.history")
    assert binding(slack_db, task_id).thread_ts == root.result["ts"]


def test_an_unknown_channel_fails_the_notification_not_the_run(
    start_plane: Any, slack_db: str, slack: FakeSlack
) -> None:
    plane = start_plane()
    create(plane, notify="slack:#nowhere")
    make_due(slack_db, "morning")
    state = wait_for(
        lambda: (s := schedule(plane)["last_notify"]) and s.startswith("failed") and s, 30, "the failure"
    )
    assert state == "failed: channel_not_found"
    assert schedule(plane)["last_task_status"] == "pending" and roots(slack) == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # replicas share a PostgreSQL
def test_two_replicas_post_a_scheduled_run_once(
    start_plane: Any, slack_db: str, slack: FakeSlack, worker_llm: FakeLLM, tmp_path: Path
) -> None:
    """Both replicas' tickers and relays run: one fires the run, one relay posts it."""
    a = start_plane()
    b = start_plane()
    create(a)
    make_due(slack_db, "morning")
    [root] = wait_for(lambda: roots(slack), 30, "the root message")
    with worker_thread(b.url, worker_llm, tmp_path / "ws"):
        wait_for(lambda: posted(slack, root.result["ts"], "result"), 30, "the result")
    assert len(roots(slack)) == 1
    for key in ("progress", "result"):
        assert len(posted(slack, root.result["ts"], key)) == 1, key
    assert schedule(b)["runs"] == 1


def test_the_manifest_lets_the_relay_resolve_a_channel_name() -> None:
    """Finding a root post after a crash needs a `#name`'s id (conversations.list)."""
    manifest = yaml.safe_load((ROOT / "integrations/slack/manifest.yaml").read_text())
    assert {"channels:read", "groups:read", "channels:history", "groups:history"} <= set(
        manifest["oauth_config"]["scopes"]["bot"]
    )
