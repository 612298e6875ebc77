"""`meta-agent execution get ID` (issue #16 item 5): the plan, the steps (tool calls and
sub-tasks, in order, with durations), the environment and the result as text, from a live
control plane that a raw worker fed over the real worker protocol."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.board.helpers import RawWorker
from tests.cli.test_cli_standin import run
from tests.support import LiveServer

PLAN = "Plan: run deployer on staging.\nRisk: changes the staging cluster.\n\nApproved by ada."


def detailed_task(c: httpx.Client) -> tuple[str, str]:
    """A finished task with a plan, two tool calls (one a sub-task) and a command's output."""
    assert c.post("/worker-queues", json={"name": "staging", "environment": "stage-eu"}).status_code == 201
    body = {"name": "deployer", "runtime": "command", "command": ["true"], "default_queue": "staging"}
    assert c.post("/agents", json=body).status_code == 201
    r = c.post("/tasks", json={"agent": "deployer", "prompt": "deploy", "plan": {"text": PLAN}})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    child = c.post("/tasks", json={"agent": "deployer", "prompt": "child"}).json()["id"]
    w = RawWorker(c, queue="staging", worker_id="w-42")
    w.claim(tid)
    w.events(
        tid,
        ("tool_started", {"tool_call_id": "c1", "name": "bash", "arguments": {"command": "kubectl get pods"}}),
        ("tool_completed", {"tool_call_id": "c1", "name": "bash", "status": "success", "output": "ok", "duration_ms": 1500}),
        ("tool_started", {"tool_call_id": "c2", "name": "delegate", "arguments": {"agent": "checker", "prompt": "x"}}),
        ("tool_output", {"tool_call_id": "c2", "chunk": f"[checker] delegated as task {child}\n"}),
        ("tool_completed", {"tool_call_id": "c2", "name": "delegate", "status": "failed", "error": "it broke", "duration_ms": 250}),
    )  # fmt: skip
    w.complete(tid, {"exit_code": 0, "output": "deployed web\ndeployed db\n"})
    return tid, child


def test_execution_get_shows_plan_steps_environment_and_text_result(server: LiveServer) -> None:
    with server.client() as c:
        tid, child = detailed_task(c)

    shown = run(None, "execution", "get", tid, url=server.url, columns=200)
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "Risk: changes the staging cluster." in out and "Approved by ada." in out
    assert "staging (stage-eu)" in out and "w-42 on test-host" in out and "command" in out
    bash, delegate = out.index("1. bash"), out.index(f"2. sub-task → checker ({child})")
    assert bash < delegate and "success · 1.5s" in out and "failed · 0.2s" in out and "it broke" in out
    # The command's output as lines of text, not a JSON string with \n escapes.
    assert "deployed web\ndeployed db" in out and "\\n" not in out

    data = json.loads(run(None, "execution", "get", tid, "--json", url=server.url).stdout)
    assert data["id"] == tid and data["plan"] == {"text": PLAN}
    detail: dict[str, Any] = data["detail"]
    assert [(s["kind"], s["name"], s["status"]) for s in detail["steps"]] == [
        ("tool", "bash", "success"),
        ("subtask", "delegate", "failed"),
    ]
    assert detail["steps"][1]["task_id"] == child and detail["steps"][0]["duration_seconds"] == 1.5
    assert detail["environment"] == {
        "queue": "staging",
        "environment": "stage-eu",
        "worker_id": "w-42",
        "worker_host": "test-host",
        "runtime": "command",
        "model": None,
    }
    assert detail["result_text"] == "deployed web\ndeployed db\n" and detail["steps_truncated"] is False


def test_a_failed_execution_says_its_class_and_next_step(server: LiveServer) -> None:
    with server.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        assert (
            c.post("/agents", json={"name": "sh", "runtime": "command", "command": ["true"]}).status_code
            == 201
        )
        tid = c.post("/tasks", json={"agent": "sh", "prompt": "x", "queue": "q1"}).json()["id"]
        w = RawWorker(c)
        w.claim(tid)
        w.fail(tid, "provider_auth_failed", "the model provider refused the credentials")
    out = run(None, "execution", "get", tid, url=server.url, columns=200).stdout
    assert "Model provider error" in out
    assert "Check the model provider's API key on the worker, then retry" in out
    assert "no tool calls or sub-tasks" in out
