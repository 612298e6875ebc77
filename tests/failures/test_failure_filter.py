"""Failure classes end to end on SQLite and PostgreSQL: tasks failed over the worker protocol,
filtered by class through the REST API, the board, the CLI and the MCP `list_tasks` tool, and
counted by `/metrics`."""

from __future__ import annotations

import json
from typing import Any

import httpx
from mcp import Client

from tests.board_api.test_api import claim, problem, seed
from tests.cli.test_cli_standin import run
from tests.support import LiveServer
from tools.backend import Backend
from tools.server import build_server

# (error code, class); one of them is a code nobody listed, which falls back to tool_error.
FAILS = [
    (
        "policy_violation",
        "policy_violation",
        "policy rule deny_commands: the pattern `rm` blocks the command `rm -rf /`",
    ),
    ("command_failed", "tool_error", "exit code 2"),
    ("provider_auth_failed", "provider_error", "401 from the provider"),
    ("timeout", "timeout", "the command ran longer than 5 s and was killed"),
    ("brand_new_code", "tool_error", "a runtime from elsewhere"),
]


def fail_tasks(c: httpx.Client) -> dict[str, str]:
    """Create one task per FAILS row plus one that completes; fail them as a worker does.
    Returns task id -> error code."""
    ids: dict[str, str] = {}
    for code, _, message in FAILS:
        tid = c.post("/tasks", json={"agent": "echo", "prompt": code}).json()["id"]
        (item,) = claim(c)
        assert item["task"]["id"] == tid
        r = c.post(
            f"/tasks/{tid}/fail", json={"token": item["token"], "error": {"code": code, "message": message}}
        )
        assert r.status_code == 200, r.text
        ids[tid] = code
    c.post("/tasks", json={"agent": "echo", "prompt": "fine"})
    (item,) = claim(c)
    assert c.post(
        f"/tasks/{item['task']['id']}/complete", json={"token": item["token"], "result": {}}
    ).is_success
    return ids


def listed(c: httpx.Client, **params: Any) -> list[str]:
    r = c.get("/tasks", params=params)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()["items"]]


def test_api_filters_by_failure_class_and_serves_class_and_hint(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        ids = fail_tasks(c)
        by_code = {code: tid for tid, code in ids.items()}
        assert listed(c, failure="tool_error") == [by_code["brand_new_code"], by_code["command_failed"]]
        assert listed(c, failure="policy_violation") == [by_code["policy_violation"]]
        assert listed(c, failure="provider_error", agent="echo") == [by_code["provider_auth_failed"]]
        assert listed(c, failure="timeout", status="failed") == [by_code["timeout"]]
        assert listed(c, failure="timeout", status="completed") == []
        assert listed(c, failure="worker_lost") == []
        assert len(listed(c)) == 6  # no filter: the completed task too

        task = c.get(f"/tasks/{by_code['policy_violation']}").json()
        assert task["failure_class"] == "policy_violation"
        assert (
            task["failure_hint"]
            == "Check the agent's policy: rule `deny_commands` matched `rm -rf /` (pattern `rm`)."
        )
        assert all(
            t["failure_class"] is None
            for t in c.get("/tasks", params={"status": "completed"}).json()["items"]
        )

        board = c.get("/board", params={"failure": "tool_error"}).json()["columns"]
        assert board["failed"]["count"] == 2 and board["completed"]["count"] == 0
        assert {t["failure_class"] for t in board["failed"]["items"]} == {"tool_error"}

        body = problem(c.get("/tasks", params={"failure": "gremlins"}), 422, "invalid_failure_class")
        assert "policy_violation" in body["detail"]
        problem(c.get("/tasks", params={"failure": "x" * 65}), 422, "validation_error")
        problem(c.get("/board", params={"failure": "gremlins"}), 422, "invalid_failure_class")


def test_metrics_count_failures_by_class_as_they_happen(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        before = httpx.get(f"{server.url}/metrics").text
        assert 'meta_agent_tasks_failed_total{failure_class="worker_lost"} 0.0' in before
        fail_tasks(c)
    m = httpx.get(f"{server.url}/metrics").text
    assert 'meta_agent_tasks_failed_total{failure_class="tool_error"} 2.0' in m
    assert 'meta_agent_tasks_failed_total{failure_class="policy_violation"} 1.0' in m
    assert 'meta_agent_tasks_failed_total{failure_class="timeout"} 1.0' in m
    assert 'meta_agent_tasks_failed_total{failure_class="invalid_input"} 0.0' in m


def test_cli_lists_by_failure_class_and_names_bad_ones(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        ids = fail_tasks(c)
    result = run(None, "execution", "list", "--failure", "provider_error", "--json", url=server.url)
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.stdout)["items"]
    assert ids[item["id"]] == "provider_auth_failed" and item["failure_class"] == "provider_error"

    table = run(None, "execution", "list", "--failure", "timeout", url=server.url)
    assert table.exit_code == 0 and next(t for t, code in ids.items() if code == "timeout") in table.stdout

    bad = run(None, "execution", "list", "--failure", "gremlins", url=server.url)
    assert bad.exit_code == 2 and "gremlins" in bad.output and "policy_violation" in bad.output

    tid = next(t for t, code in ids.items() if code == "policy_violation")
    shown = run(None, "execution", "get", tid, url=server.url, columns=200)
    assert shown.exit_code == 0, shown.output
    assert "Policy violation" in shown.stdout and "rule `deny_commands` matched `rm -rf /`" in shown.stdout


async def test_mcp_list_tasks_takes_failure(server: LiveServer) -> None:
    with server.client() as c:
        seed(c)
        ids = fail_tasks(c)
    async with Client(build_server(Backend(server.url, None))) as mcp:
        result = await mcp.call_tool("list_tasks", {"failure": "policy_violation"})
        assert not result.is_error, result.content
        assert isinstance(result.structured_content, dict)
        (task,) = result.structured_content["tasks"]
        assert ids[task["id"]] == "policy_violation"
        bad = await mcp.call_tool("list_tasks", {"failure": "gremlins"})
        assert bad.is_error
        tool = next(t for t in (await mcp.list_tools()).tools if t.name == "list_tasks")
        assert "worker_lost" in json.dumps(tool.input_schema)
        got = await mcp.call_tool("get_task", {"task_id": task["id"]})
        assert isinstance(got.structured_content, dict)
        assert got.structured_content["failure_class"] == "policy_violation"
        assert got.structured_content["failure_hint"].startswith(
            "Check the agent's policy: rule `deny_commands`"
        )
