"""A real model end to end (issue #13): SmolLM2-135M on llama-cpp-python's server, our control
plane, a `meta-agent worker` process and the CLI. See conftest.py for the set-up; run with
`make test-model`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.model.conftest import CONTEXT, MODEL, QUEUE, ModelServer, provider
from tests.support import ROOT, LiveServer, child_env, wait_for

pytestmark = pytest.mark.usefixtures("worker")

FINISHED = ("completed", "failed", "cancelled")
RUN_TIMEOUT = 600  # seconds; a turn takes 5-90 s on two busy cores (20-50 prompt tokens/s)


def make_agent(
    c: httpx.Client, name: str, server: ModelServer, *, tools: tuple[str, ...] = (), **prov: Any
) -> None:
    body = {
        "name": name,
        "description": f"{name} (real-model test)",
        "runtime": "llm",
        "model": MODEL,
        "instructions": "You are a helpful assistant. Answer in one short sentence.",
        "tools": list(tools),
        "default_queue": QUEUE,
        "provider": provider(server, **prov),
        "policy": {"max_seconds": RUN_TIMEOUT},
    }
    r = c.post("/agents", json=body)
    assert r.status_code == 201, r.text


def cli(
    plane: LiveServer, *args: str, timeout: float = RUN_TIMEOUT, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=child_env(META_AGENT_URL=plane.url, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def events(c: httpx.Client, tid: str, kind: str | None = None) -> list[dict[str, Any]]:
    items = c.get(f"/tasks/{tid}/events", params={"limit": 1000}).json()["items"]
    return [e for e in items if kind is None or e["kind"] == kind]


def wait_finished(c: httpx.Client, tid: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        task = c.get(f"/tasks/{tid}").json()
        return task if task["status"] in FINISHED else None

    return wait_for(check, timeout, f"task {tid} to finish")


def new_task(c: httpx.Client, agent: str, prompt: str) -> str:
    r = c.post("/tasks", json={"agent": agent, "prompt": prompt})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_an_agent_streams_a_text_answer_through_the_cli(plane: LiveServer, model_server: ModelServer) -> None:
    with plane.client() as c:
        make_agent(c, "talker", model_server)

    run = cli(plane, "exec", "agent", "talker", "What color is the sky on a clear day?", "--follow", "--json")

    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = json_lines(run.stdout)
    task = lines[-1]["task"]
    assert lines[-1]["kind"] == "end" and task["status"] == "completed", task
    assert str(task["result"]["output"]).strip()
    assert any(line.get("kind") == "message_delta" for line in lines)
    usage = task["usage"] or {}
    assert usage.get("prompt_tokens", 0) > 0 and usage.get("completion_tokens", 0) > 0, usage
    assert usage.get("cost", 0) == 0  # the price override: a local model costs nothing


def test_a_forced_bash_call_runs_and_the_next_turn_completes(
    plane: LiveServer, model_server: ModelServer
) -> None:
    with plane.client() as c:
        make_agent(
            c,
            "basher",
            model_server,
            tools=("bash",),
            first_tool_choice="bash",
            tool_choice="omit",
        )
        tid = new_task(c, "basher", "Run this shell command: echo hello")
        task = wait_finished(c, tid)

        started = events(c, tid, "tool_started")
        completed = events(c, tid, "tool_completed")
        messages = events(c, tid, "message")
    assert task["status"] == "completed", task.get("error")
    assert [e["data"]["name"] for e in started][:1] == ["bash"]
    assert completed and completed[0]["data"]["tool_call_id"] == started[0]["data"]["tool_call_id"]
    # The turn after the tool call (the server's template needs the assistant's `content`).
    assert messages and messages[-1]["seq"] > completed[0]["seq"]


def test_ask_user_parks_the_task_and_the_answer_resumes_it(
    plane: LiveServer, model_server: ModelServer
) -> None:
    with plane.client() as c:
        make_agent(
            c, "asker", model_server, tools=("ask_user",), first_tool_choice="ask_user", tool_choice="omit"
        )
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "exec",
            "agent",
            "asker",
            "Ask me which city I live in.",
            "--follow",
            "--json",
        ],
        env=child_env(META_AGENT_URL=plane.url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        tid = None
        for line in follower.stdout:  # ends when the follower does
            event = json.loads(line) if line.startswith("{") else {}
            tid = event.get("task_id") or tid
            if event.get("kind") == "status" and event["data"].get("status") == "requires_input":
                break
        assert tid, "the follower never saw the task wait for input"
        with plane.client() as c:
            parked = c.get(f"/tasks/{tid}").json()
        assert parked["status"] == "requires_input" and parked["pending_input"]["question"].strip()

        answer = cli(plane, "execution", "respond", tid, "Paris")
        assert answer.returncode == 0, answer.stderr

        out, err = follower.communicate(timeout=RUN_TIMEOUT)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    end = json_lines(out)[-1]
    assert end["kind"] == "end" and end["task"]["status"] == "completed", (end, err[-2000:])
    with plane.client() as c:
        received = events(c, tid, "input_received")
    assert received and "Paris" in json.dumps(received[0]["data"])


def test_the_meta_agent_lists_agents_then_answers(plane: LiveServer, model_server: ModelServer) -> None:
    with plane.client() as c:
        make_agent(c, "lister", model_server)

    run = cli(
        plane,
        "exec",
        "Which agents are there?",
        "--json",
        "--yes",
        META_AGENT_MODEL=MODEL,
        META_AGENT_MODEL_API_BASE=model_server.api_base,
        META_AGENT_MODEL_FIRST_TOOL_CHOICE="list_agents",
        META_AGENT_MODEL_TOOL_CHOICE="omit",
        META_AGENT_MODEL_MAX_TOKENS="64",
        META_AGENT_MODEL_TEMPERATURE="0",
        META_AGENT_MODEL_RETRIES="1",
    )

    lines = json_lines(run.stdout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    calls = [e for e in lines if e.get("type") == "tool_call"]
    results = [e for e in lines if e.get("type") == "tool_result"]
    assert calls and calls[0]["name"] == "list_agents", lines
    assert results and not results[0]["is_error"], results
    assert isinstance(json.loads(results[0]["text"])["agents"], list)  # its `query` may filter all out
    reply = "".join(e["text"] for e in lines if e.get("type") == "text")
    assert reply.strip(), lines  # the turn after the tool result answered


def test_a_server_killed_mid_stream_fails_the_task(plane: LiveServer, doomed_server: ModelServer) -> None:
    with plane.client() as c:
        make_agent(c, "rambler", doomed_server, max_tokens=1500)
        tid = new_task(c, "rambler", "Count from 1 to 1000, one number per line.")
        wait_for(lambda: events(c, tid, "message_delta"), RUN_TIMEOUT, "the answer to start streaming")
        doomed_server.kill()
        task = wait_finished(c, tid)

    assert task["status"] == "failed", task
    assert task["error"]["code"] in ("provider_unavailable", "provider_error"), task["error"]


def test_a_prompt_over_the_context_window_fails_with_context_overflow(
    plane: LiveServer, model_server: ModelServer
) -> None:
    with plane.client() as c:
        make_agent(c, "overflow", model_server, retries=3)
        started = time.monotonic()
        tid = new_task(c, "overflow", "Summarise this: " + "lorem ipsum dolor " * CONTEXT)
        task = wait_finished(c, tid)

    assert task["status"] == "failed", task
    assert task["error"]["code"] == "context_overflow", task["error"]
    assert time.monotonic() - started < RUN_TIMEOUT
