"""What `/slack/events` accepts: only signed, fresh requests (401 otherwise, nothing done),
each event once however often Slack redelivers it (also after a restart), and never a 500."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import httpx

from tests.fakes.llm_server import ChatLLM, text
from tests.fakes.slack_server import FakeSlack
from tests.integrations.slack_support import (
    SECRET,
    event_body,
    mention,
    post_signed,
    send_event,
)
from tests.support import LiveServer, wait_for


def _nothing_happened(plane: LiveServer, slack: FakeSlack, llm: ChatLLM) -> None:
    assert llm.requests == []
    assert [c.method for c in slack.calls if c.method != "auth.test"] == []
    with plane.client() as c:
        assert c.get("/tasks").json()["items"] == []


def test_bad_signature_or_stale_timestamp_gets_401_and_does_nothing(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM
) -> None:
    plane = start_plane()
    body = json.dumps(event_body(mention("U1", "delete everything"))).encode()
    bad = post_signed(plane, body, "application/json", secret="not-the-secret")
    assert bad.status_code == 401
    stale = post_signed(plane, body, "application/json", timestamp=int(time.time()) - 600)
    assert stale.status_code == 401
    with httpx.Client() as http:  # no signature at all
        unsigned = http.post(
            plane.url + "/slack/events", content=body, headers={"Content-Type": "application/json"}
        )
    assert unsigned.status_code == 401
    # A signature over a different body (tampered in transit).
    headers = {"X-Slack-Request-Timestamp": str(int(time.time()))}
    with httpx.Client() as http:
        from slack_sdk.signature import SignatureVerifier

        headers["X-Slack-Signature"] = SignatureVerifier(SECRET).generate_signature(
            timestamp=headers["X-Slack-Request-Timestamp"], body="{}"
        )
        tampered = http.post(
            plane.url + "/slack/events", content=body, headers={**headers, "Content-Type": "application/json"}
        )
    assert tampered.status_code == 401
    _nothing_happened(plane, slack, llm)


def test_url_verification_and_malformed_bodies_never_500(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM
) -> None:
    plane = start_plane()
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "t"}).encode()
    r = post_signed(plane, body, "application/json")
    assert r.status_code == 200 and r.json() == {"challenge": "abc123"}
    for raw, ctype in [
        (b"{not json", "application/json"),
        (b"payload=%7Bnot-json", "application/x-www-form-urlencoded"),
        (
            urllib.parse.urlencode({"payload": json.dumps({"type": "block_actions"})}).encode(),
            "application/x-www-form-urlencoded",
        ),
        (json.dumps({"type": "event_callback", "event_id": "EvX", "event": {}}).encode(), "application/json"),
        (b"", "application/json"),
    ]:
        r = post_signed(plane, raw, ctype)
        assert 200 <= r.status_code < 500, (raw, r.status_code, r.text)
    _nothing_happened(plane, slack, llm)


def test_a_retried_event_is_processed_once_also_after_a_restart(
    start_plane: Any, slack: FakeSlack, llm: ChatLLM
) -> None:
    plane = start_plane()
    llm.play(text("Hello there."), text("A second answer nobody should see."))
    event = mention("U1", "hi")
    thread = event["ts"]
    first = send_event(plane, event, event_id="EvONCE")
    assert first.status_code == 200
    # Slack did not hear back in time (as far as it knows) and redelivers, twice.
    for n in (1, 2):
        again = send_event(
            plane,
            event,
            event_id="EvONCE",
            headers={"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"},
        )
        assert again.status_code == 200
    wait_for(lambda: slack.posts(thread_ts=thread), 30, "the reply")
    wait_for(lambda: slack.calls_to("reactions.remove"), 30, "the end of the turn")
    plane.stop()

    # Another replica, or this one restarted: the id is stored, so still once.
    plane2 = start_plane()
    assert send_event(plane2, event, event_id="EvONCE", headers={"X-Slack-Retry-Num": "3"}).status_code == 200
    # A different event in the same thread is new, and is processed: proof that plane2 works.
    follow = mention("U1", "and again", thread_ts=thread)
    assert send_event(plane2, follow).status_code == 200
    wait_for(lambda: len(slack.posts(thread_ts=thread)) == 2, 30, "the second reply")
    asked = [r["messages"][-1]["content"] for r in llm.requests]
    assert asked == ["hi", "and again"]  # one model call per distinct event
    assert [c.args["text"] for c in slack.posts(thread_ts=thread)] == [
        "Hello there.",
        "A second answer nobody should see.",
    ]
    # The second turn continued the same conversation (the thread's).
    assert any(m.get("content") == "hi" for m in llm.requests[1]["messages"])
