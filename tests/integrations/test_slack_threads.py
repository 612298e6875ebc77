"""Where conversations start: assistant threads (status line, suggested prompts) and direct
messages; and the app manifest the README tells people to create the app from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.fakes.llm_server import ChatLLM, text
from tests.fakes.slack_server import FakeSlack
from tests.integrations.slack_support import send_event, ts
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_assistant_thread_shows_status_and_continues_the_conversation(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM
) -> None:
    plane = start_plane()
    thread = ts()
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {"user_id": "U1", "channel_id": "D1", "thread_ts": thread, "context": {}},
        "ts": ts(),
    }
    assert send_event(plane, started).status_code == 200
    prompts = wait_for(
        lambda: slack.calls_to("assistant.threads.setSuggestedPrompts"), 30, "suggested prompts"
    )
    assert prompts[0].args["channel_id"] == "D1" and prompts[0].args["thread_ts"] == thread

    llm.play(text("Nothing is running."), text("Still nothing."))
    for n, words in enumerate(["what is running?", "and now?"], start=1):
        message = {
            "type": "message",
            "channel_type": "im",
            "user": "U1",
            "text": words,
            "ts": ts(),
            "channel": "D1",
            "thread_ts": thread,
        }
        assert send_event(plane, message).status_code == 200
        wait_for(lambda n=n: len(slack.posts(thread_ts=thread)) == n, 30, f"reply {n}")
    status = slack.calls_to("assistant.threads.setStatus")
    assert status and status[0].args == {"channel_id": "D1", "thread_ts": thread, "status": "is thinking…"}
    assert not slack.calls_to("reactions.add")  # the status line, not a reaction, in assistant threads
    assert [c.args["text"] for c in slack.posts(thread_ts=thread)] == [
        "Nothing is running.",
        "Still nothing.",
    ]
    # One conversation for the thread: the second turn saw the first.
    assert any(m.get("content") == "what is running?" for m in llm.requests[1]["messages"])


def test_a_direct_message_gets_a_threaded_reply_and_edits_are_ignored(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM
) -> None:
    plane = start_plane()
    llm.play(text("Hi! What should I run?"))
    dm = {"type": "message", "channel_type": "im", "user": "U1", "text": "hi", "ts": ts(), "channel": "D2"}
    assert send_event(plane, dm).status_code == 200
    edit = {**dm, "subtype": "message_changed", "ts": ts()}
    assert send_event(plane, edit).status_code == 200
    own = {**dm, "user": "UBOT", "bot_id": "BBOT", "ts": ts()}
    assert send_event(plane, own).status_code == 200
    post = wait_for(lambda: slack.posts(thread_ts=dm["ts"]), 30, "the reply")[0]
    assert post.args["text"] == "Hi! What should I run?" and post.args["channel"] == "D2"
    wait_for(lambda: slack.calls_to("reactions.remove"), 30, "the end of the turn")
    assert len(llm.requests) == 1


def test_manifest_has_the_scopes_events_and_urls() -> None:
    manifest = yaml.safe_load((ROOT / "integrations/slack/manifest.yaml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "channels:history", "im:history", "commands"} <= scopes
    assert {"reactions:write", "files:write", "assistant:write"} <= scopes
    settings = manifest["settings"]
    events = set(settings["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.im", "assistant_thread_started"} <= events
    assert settings["interactivity"]["is_enabled"] is True
    urls = [settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"]]
    urls += [c["url"] for c in manifest["features"]["slash_commands"]]
    assert all(u.endswith("/slack/events") for u in urls)
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/meta-agent"]
