"""`meta-agent exec "prompt"`: the meta agent in the terminal, against a live control plane
with a worker process, the fake provider making the tool calls a real model would make."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli import follow as follow_module
from cli.main import app
from tests.fakes.llm_server import ChatLLM, text, tool_call
from tests.meta_agent.test_agent_chat import K8S, last_task, tool_results
from tests.support import LiveServer, spawn, wait_for

BROKEN = {
    "name": "disk-check",
    "description": "Checks free disk space on the hosts",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["python3", "-c", "import sys; print('df: /data is 99% full'); sys.exit(3)"],
}
PLAN = "Plan: run disk-check on q1. Risk: read-only."


@pytest.fixture
def plane(server: LiveServer) -> LiveServer:
    with server.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        assert c.post("/agents", json=BROKEN).status_code == 201
    return server


def start_worker(url: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    procs.append(
        spawn(
            ["-m", "cli.main", "worker", "start", "--queue", "q1"],
            log=tmp_path / "worker.log",
            META_AGENT_URL=url,
            META_AGENT_WORKSPACE_ROOT=str(tmp_path / "ws"),
        )
    )
    with _api(url) as c:
        wait_for(lambda: c.get("/worker-queues/q1").json()["active_workers"], 20, "the worker to be live")


def _api(url: str) -> httpx.Client:
    return httpx.Client(base_url=url + "/api/v1", timeout=10)


def exec_cli(url: str, llm: ChatLLM | None, *args: str, input: str | None = None) -> Any:
    env = {
        "META_AGENT_URL": url,
        "META_AGENT_API_KEY": None,
        "META_AGENT_PUBLIC_URL": None,
        "META_AGENT_MODEL": "openai/fake" if llm else None,
        "META_AGENT_LLM_API_BASE": llm.api_base if llm else None,
        "META_AGENT_LLM_API_KEY": "sk-test" if llm else None,
        "COLUMNS": "200",
    }
    return CliRunner().invoke(app, ["exec", *args], env=env, input=input)


def test_exec_yes_plans_creates_follows_and_exits_non_zero_when_the_task_fails(
    plane: LiveServer, llm: ChatLLM, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    start_worker(plane.url, tmp_path, procs)
    llm.play(
        tool_call("list_agents", {}),
        tool_call("list_queues", {}),
        tool_call(
            "create_task", {"agent": "disk-check", "queue": "q1", "prompt": "check the disks"}, say=PLAN
        ),
        lambda body: tool_call("stream_task", {"task_id": last_task(body)["id"], "timeout": 30}),
        lambda body: text(
            f"The disk check failed: {last_task(body)['error']['message']}. {last_task(body)['board_url']}"
        ),
    )

    result = exec_cli(plane.url, llm, "check", "the", "disks", "-y")

    assert result.exit_code == 1, result.output
    out = result.output
    assert PLAN in out
    assert "→ create_task" in out and "→ stream_task" in out
    assert "df: /data is 99% full" in out  # the task's live output, relayed while following
    with _api(plane.url) as c:
        [task] = c.get("/tasks").json()["items"]
    assert f"/#/tasks/{task['id']}" in out
    assert task["status"] == "failed"
    assert task["source"] == "cli" and task["requested_by"]
    assert "Go ahead?" not in out


def test_exec_without_yes_waits_for_approval_and_a_no_creates_nothing(
    plane: LiveServer, llm: ChatLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow_module, "stdin_is_tty", lambda: True)
    llm.play(
        tool_call("create_task", {"agent": "disk-check", "prompt": "check the disks"}, say=PLAN),
        text("Understood, I did not start it."),
    )

    result = exec_cli(plane.url, llm, "check the disks", input="n\n")

    assert result.exit_code == 0, result.output
    assert "about to run disk-check" in result.output and "Go ahead?" in result.output
    assert "did not start it" in result.output
    assert "did not approve" in llm.requests[-1]["messages"][-1]["content"]
    with _api(plane.url) as c:
        assert c.get("/tasks").json()["items"] == []


def test_exec_without_a_model_names_the_setting_and_exits_2(plane: LiveServer) -> None:
    result = exec_cli(plane.url, None, "check the disks", "-y")
    assert result.exit_code == 2
    assert "META_AGENT_MODEL" in result.output


def test_exec_asks_the_person_when_the_task_needs_input_and_completes(
    plane: LiveServer,
    llm: ChatLLM,
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(follow_module, "stdin_is_tty", lambda: True)
    with _api(plane.url) as c:
        assert c.post("/agents", json=K8S).status_code == 201
    start_worker(plane.url, tmp_path, procs)
    llm.play(
        tool_call(
            "create_task", {"agent": "k8s-health", "queue": "q1", "prompt": "check the cluster"}, say=PLAN
        ),
        lambda body: tool_call("stream_task", {"task_id": last_task(body)["id"], "timeout": 30}),
        lambda body: text(
            f"Healthy: {last_task(body)['result']['output'].strip()}. {last_task(body)['board_url']}"
        ),
    )

    result = exec_cli(plane.url, llm, "check the cluster", "-y", input="prod\n")

    assert result.exit_code == 0, result.output
    assert "namespace" in result.output  # the task's question, asked at the terminal
    assert "Healthy: cluster healthy in prod" in result.output
    with _api(plane.url) as c:
        [task] = c.get("/tasks").json()["items"]
    assert task["status"] == "completed"


def test_chat_session_keeps_the_conversation_and_answers_questions_without_creating_work(
    plane: LiveServer, llm: ChatLLM
) -> None:
    llm.play(
        tool_call("list_tasks", {"status": "running"}),
        lambda body: text(f"{len(last_or_empty(body))} tasks are running."),
        text("You're welcome."),
    )
    env = {
        "META_AGENT_URL": plane.url,
        "META_AGENT_MODEL": "openai/fake",
        "META_AGENT_LLM_API_BASE": llm.api_base,
    }
    env["META_AGENT_LLM_API_KEY"] = "sk-test"
    result = CliRunner().invoke(app, ["chat"], env=env, input="what is running?\nthanks\nexit\n")

    assert result.exit_code == 0, result.output
    assert "0 tasks are running." in result.output and "You're welcome." in result.output
    second = llm.requests[-1]["messages"]
    assert [m["content"] for m in second if m["role"] == "user"] == ["what is running?", "thanks"]
    with _api(plane.url) as c:
        assert c.get("/tasks").json()["items"] == []


def last_or_empty(body: dict[str, Any]) -> list[Any]:
    return list(tool_results(body)[-1]["tasks"])
