"""Secrets a task prints or returns are masked before they are stored: in the event log, the
stream, the result, the error, the question and the checkpoint (issue 12 item 13)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.board_api.test_api import claim, seed

OWN = "own-provider-secret-4242"  # the control plane's own secret (settings), not credential-shaped
LEAKS = ["sk-proj-" + "Ab3" * 12, "ghp_" + "x9Y" * 12, OWN]
LEAK = f"export OPENAI_API_KEY={LEAKS[0]}; token {LEAKS[1]}; provider key {OWN}"


def _post(c: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_secrets_are_masked_at_ingest(server_factory: Any, db_url: str) -> None:
    server = server_factory(db_url, llm_api_key=OWN)
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        token = claim(c)[0]["token"]
        events = [
            {"kind": "message_delta", "data": {"text": LEAK}},
            {"kind": "tool_output", "data": {"tool_call_id": "c1", "output": LEAK}},
            {"kind": "log", "data": {"message": "env", "env": {"api_key": "plain-value-1"}}},
        ]
        _post(c, f"/tasks/{tid}/events", {"token": token, "events": events})
        memory = {"messages": [{"role": "tool", "content": LEAK}]}
        _post(c, f"/tasks/{tid}/checkpoint", {"token": token, "checkpoint": memory})
        asked = _post(c, f"/tasks/{tid}/request-input", {"token": token, "question": LEAK, "choices": [LEAK]})
        _post(c, f"/tasks/{tid}/input", {"answer": "go on"})
        (again,) = claim(c)
        token = again["token"]
        done = _post(
            c,
            f"/tasks/{tid}/complete",
            {
                "token": token,
                "result": {"output": LEAK},
                "events": [{"kind": "message", "data": {"text": LEAK}}],
            },
        )
        other = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        failed = _post(
            c,
            f"/tasks/{other}/fail",
            {"token": claim(c)[0]["token"], "error": {"code": "x", "message": LEAK}},
        )
        stored = [
            str(asked["pending_input"]),
            str(again["checkpoint"]),
            str(done["result"]),
            c.get(f"/tasks/{tid}").text,
            c.get(f"/tasks/{tid}/events").text,
            c.get(f"/tasks/{tid}/stream", timeout=30).text,  # a finished task's stream ends
            str(failed["error"]),
            c.get(f"/tasks/{other}/events").text,
        ]
    for text in stored:
        assert "[redacted]" in text, text
        assert not [s for s in [*LEAKS, "plain-value-1"] if s in text], text
