"""Provider faults and cancellation for `llm` agents, through litellm over real HTTP."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.fakes.llm_server import FakeLLM, Gate, error, text, tool_call
from tests.support import LiveServer, wait_for
from tests.worker.helpers import NS_PID, gone
from tests.worker.llm_support import events, llm_agent, new_task, tool_events, wait_status, worker_thread


def test_rate_limit_and_server_error_are_retried_visibly(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(error(429), error(500), text("finally"))
    with server.client() as c:
        llm_agent(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "completed", "failed")
        assert task["status"] == "completed" and task["result"] == {"output": "finally"}
        retries = [e["data"]["message"] for e in events(c, tid, "log")]
        assert len(retries) == 2 and all("retry" in m for m in retries)
        assert "RateLimitError" in retries[0] and "InternalServerError" in retries[1]
    assert len(llm.requests) == 3  # no hidden SDK retries on top of ours


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (error(401), "provider_auth_failed"),
        (error(404), "model_not_found"),
        (
            error(
                400,
                "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
                code="context_length_exceeded",
            ),
            "context_overflow",
        ),
    ],
    ids=["401", "404", "context"],
)
def test_unfixable_provider_errors_fail_with_a_clear_code(
    server: LiveServer, llm: FakeLLM, tmp_path: Path, reply: object, code: str
) -> None:
    llm.script(reply)  # type: ignore[arg-type]
    with server.client() as c:
        llm_agent(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed")
        assert task["status"] == "failed" and task["error"]["code"] == code, task["error"]
    assert len(llm.requests) == 1


def test_a_refused_key_quoted_by_the_provider_is_masked_on_the_board(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    secret = "sk-live-0123456789abcdefSECRET"
    llm.script(error(401, f"Incorrect API key provided: {secret}. You can find your key in the dashboard."))
    with server.client() as c:
        llm_agent(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed")
        assert task["error"]["code"] == "provider_auth_failed"
        assert "[redacted]" in task["error"]["message"]
        shown = json.dumps([task, c.get(f"/tasks/{tid}/events").json()])
    assert secret not in shown


def test_missing_model_is_a_clear_failure(server: LiveServer, llm: FakeLLM, tmp_path: Path) -> None:
    with server.client() as c:
        llm_agent(c, model=None)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed", timeout=10)
        assert task["error"]["code"] == "model_not_configured"
        assert "`model`" in task["error"]["message"] and "META_AGENT_LLM_API_KEY" in task["error"]["message"]
    assert llm.requests == []


def test_cancel_stops_a_running_model_stream_within_two_seconds(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    gate = Gate()  # never opened: the model "generates" until the connection goes
    llm.script(text("thinking about it for a very long time indeed", gate=gate))
    with server.client() as c:
        llm_agent(c)
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        gate.wait_reached()
        wait_for(lambda: events(c, tid, "message_delta"), 10, "the first deltas")
        t0 = time.monotonic()
        assert c.post(f"/tasks/{tid}/cancel").json()["cancel_requested"] is True
        wait_status(c, tid, "cancelled", timeout=5)
        assert time.monotonic() - t0 < 2.0
        wait_for(lambda: llm.disconnects >= 1, 5, "the provider to see the stream closed")


def test_cancel_kills_a_running_bash_tool_within_two_seconds(
    server: LiveServer, llm: FakeLLM, tmp_path: Path, shared_tmp: Path
) -> None:
    pidfile = shared_tmp / "pid"
    llm.script(
        tool_call(
            "bash", {"command": f"echo $$ {NS_PID} > {pidfile}; echo started; sleep 60 & wait"}, "call_b"
        )
    )
    with server.client() as c:
        llm_agent(c, tools=["bash"])
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        wait_for(lambda: tool_events(c, tid).get("call_b", {}).get("output"), 10, "the command to start")
        inner, ns = pidfile.read_text().split()
        t0 = time.monotonic()
        c.post(f"/tasks/{tid}/cancel")
        wait_status(c, tid, "cancelled", timeout=5)
        assert time.monotonic() - t0 < 2.0
        wait_for(lambda: gone(ns, int(inner)), 5, "the bash process to be gone")
        assert os.path.exists(pidfile)
        completed = tool_events(c, tid)["call_b"]["completed"]
        assert completed["status"] == "interrupted"
