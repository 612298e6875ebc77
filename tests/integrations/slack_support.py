"""Helpers for the Slack tests: Slack's signed requests, its payload shapes, and reading
what the fake Slack recorded."""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier

from tests.fakes.slack_server import TEAM, Call, FakeSlack
from tests.support import LiveServer

SECRET = "test-signing-secret"
CHANNEL = "C1"
_n = itertools.count(1)


def ts() -> str:
    """A fresh Slack message timestamp (as a person's message would have)."""
    return f"{1600000000 + next(_n)}.000200"


def sign(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body.decode())
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}


def post_signed(
    plane: LiveServer,
    body: bytes,
    content_type: str,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    with httpx.Client(timeout=30) as http:
        return http.post(
            plane.url + "/slack/events",
            content=body,
            headers={
                "Content-Type": content_type,
                **sign(body, secret=secret, timestamp=timestamp),
                **(headers or {}),
            },
        )


def event_body(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "verification-token",
        "team_id": TEAM,
        "api_app_id": "A1",
        "event": {"event_ts": event.get("ts", ts()), **event},
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_n):08d}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": "UBOT", "is_bot": True}],
    }


def send_event(plane: LiveServer, event: dict[str, Any], **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", None)
    body = json.dumps(event_body(event, **kw)).encode()
    return post_signed(plane, body, "application/json", headers=headers)


def mention(user: str, text: str, *, thread_ts: str | None = None, channel: str = CHANNEL) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": f"<@UBOT> {text}", "ts": ts(), "channel": channel}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def reply(user: str, text: str, thread_ts: str, channel: str = CHANNEL) -> dict[str, Any]:
    """A plain message in a thread (no mention), as `message.channels` delivers it."""
    return {
        "type": "message",
        "channel_type": "channel",
        "user": user,
        "text": text,
        "ts": ts(),
        "thread_ts": thread_ts,
        "channel": channel,
    }


def block_action(
    user: str, message: dict[str, Any], action: dict[str, Any], channel: str = CHANNEL
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A1",
        "token": "verification-token",
        "trigger_id": f"trigger-{next(_n)}",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel},
        "channel": {"id": channel, "name": "ops"},
        "message": message,
        "response_url": "https://hooks.slack.invalid/actions/1",
        "actions": [{**action, "action_ts": str(time.time())}],
    }


def press(plane: LiveServer, payload: dict[str, Any]) -> httpx.Response:
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    return post_signed(plane, body, "application/x-www-form-urlencoded")


def button(call: Call, label: str) -> dict[str, Any]:
    """The button labelled `label` in a posted message's blocks."""
    for block in call.args.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("type") == "button" and element["text"]["text"] == label:
                return {**element, "block_id": block.get("block_id")}
    raise AssertionError(f"no button {label!r} in {call.args.get('blocks')}")


def posted(slack: FakeSlack, thread_ts: str, key: str) -> list[Call]:
    """The relay's posts for `key` (progress, result, q<seq>) in a thread, by their metadata."""
    return [
        c
        for c in slack.posts(thread_ts=thread_ts)
        if ((c.args.get("metadata") or {}).get("event_payload") or {}).get("post", "").startswith(key)
    ]


def message_of(call: Call, ts: str) -> dict[str, Any]:
    """The message as Slack would put it in an interaction payload."""
    return {
        "type": "message",
        "ts": ts,
        "thread_ts": call.args.get("thread_ts"),
        "text": call.args.get("text"),
        "blocks": call.args.get("blocks"),
        "user": "UBOT",
        "bot_id": "BBOT",
    }


def text_of(call: Call) -> str:
    return json.dumps([call.args.get("text"), call.args.get("blocks")])
