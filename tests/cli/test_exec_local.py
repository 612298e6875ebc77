"""`exec ... --local --cwd DIR`, `queues delete`, `exec "prompt" --json` and the meta agent
over the control plane's MCP endpoint (`--mcp`): a live control plane, the real CLI
(CliRunner), the fake provider over real HTTP; the local worker is the real one."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.meta import user_name
from tests.fakes.llm_server import ChatLLM, text, tool_call
from tests.meta_agent.test_agent_chat import last_task
from tests.support import LiveServer, spawn, wait_for
from tests.worker.helpers import gone

# Reads a file it was given in its working directory, writes one there.
WRITER = {
    "name": "writer",
    "description": "Writes a report file in its working directory",
    "runtime": "command",
    "command": [
        "python3",
        "-c",
        "import pathlib; print('read:', pathlib.Path('input.txt').read_text().strip()); "
        "pathlib.Path('out.txt').write_text('written by the task')",
    ],
}
FAILING = {
    "name": "failing",
    "description": "Always fails",
    "runtime": "command",
    "command": ["python3", "-c", "import sys; print('nope', file=sys.stderr); sys.exit(3)"],
}
PLAN = "Plan: run writer locally. Risk: changes files in your directory."


@pytest.fixture
def plane(server: LiveServer) -> LiveServer:
    with server.client() as c:
        assert c.post("/worker-queues", json={"name": "remote"}).status_code == 201
        for agent in (WRITER, FAILING):
            assert c.post("/agents", json=agent).status_code == 201
    return server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "project"
    d.mkdir()
    (d / "input.txt").write_text("hello from the project\n")
    return d


def cli(url: str, llm: ChatLLM | None, *args: str, input: str | None = None) -> Any:
    env = {
        "META_AGENT_URL": url,
        "META_AGENT_API_KEY": None,
        "META_AGENT_PUBLIC_URL": None,
        "META_AGENT_MODEL": "openai/fake" if llm else None,
        "META_AGENT_LLM_API_BASE": llm.api_base if llm else None,
        "META_AGENT_LLM_API_KEY": "sk-test" if llm else None,
        "META_AGENT_MCP": None,
        "META_AGENT_MCP_URL": None,
        "META_AGENT_LOCAL": None,
        "META_AGENT_CWD": None,
        "META_AGENT_JSON": None,
        "COLUMNS": "200",
    }
    return CliRunner().invoke(app, list(args), env=env, input=input)


def api(url: str) -> httpx.Client:
    return httpx.Client(base_url=url + "/api/v1", timeout=10)


def queue_names(url: str) -> list[str]:
    result = cli(url, None, "queues", "list", "--json")
    assert result.exit_code == 0, result.output
    return [q["name"] for q in json.loads(result.stdout)]


def only_task(url: str) -> dict[str, Any]:
    with api(url) as c:
        [task] = c.get("/tasks").json()["items"]
    return task  # type: ignore[no-any-return]


# --- exec agent NAME --local ---------------------------------------------------------------


def test_exec_agent_local_runs_in_cwd_and_deletes_its_queue(plane: LiveServer, workdir: Path) -> None:
    result = cli(plane.url, None, "exec", "agent", "writer", "go", "--local", "--cwd", str(workdir))

    assert result.exit_code == 0, result.output
    assert (workdir / "out.txt").read_text() == "written by the task"
    assert "read: hello from the project" in result.output  # it ran in DIR, live output relayed
    assert sorted(p.name for p in workdir.iterdir()) == ["input.txt", "out.txt"]  # no stray artifacts/
    task = only_task(plane.url)
    assert task["status"] == "completed" and task["queue"].startswith("local-")
    assert task["source"] == "cli"
    assert queue_names(plane.url) == ["remote"]  # the throw-away queue is gone


def test_exec_agent_local_failure_exits_non_zero_and_still_deletes_the_queue(
    plane: LiveServer, workdir: Path
) -> None:
    result = cli(
        plane.url, None, "exec", "agent", "failing", "go", "--local", "--cwd", str(workdir), "--json"
    )

    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["type"] == "local" and lines[0]["cwd"] == str(workdir)
    assert lines[-1]["kind"] == "end" and lines[-1]["task"]["status"] == "failed"
    assert only_task(plane.url)["error"]["code"] == "command_failed"
    assert queue_names(plane.url) == ["remote"]


def test_local_flags_are_checked(plane: LiveServer, workdir: Path) -> None:
    missing = cli(plane.url, None, "exec", "agent", "writer", "go", "--local", "--cwd", str(workdir / "nope"))
    alone = cli(plane.url, None, "exec", "agent", "writer", "go", "--cwd", str(workdir))
    both = cli(plane.url, None, "exec", "agent", "writer", "go", "--local", "-q", "remote")

    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert alone.exit_code == 2 and "--cwd needs --local" in alone.output
    assert both.exit_code == 2 and "--local" in both.output
    assert "Traceback" not in missing.output + alone.output + both.output
    assert queue_names(plane.url) == ["remote"]
    with api(plane.url) as c:
        assert c.get("/tasks").json()["items"] == []


# --- exec "prompt" --local ---------------------------------------------------------------


def test_exec_prompt_local_pins_the_task_to_the_local_queue(
    plane: LiveServer, llm: ChatLLM, workdir: Path
) -> None:
    llm.play(
        tool_call("list_agents", {}),
        # The model names another queue: a --local run still creates the task locally.
        tool_call("create_task", {"agent": "writer", "queue": "remote", "prompt": "write it"}, say=PLAN),
        lambda body: tool_call("stream_task", {"task_id": last_task(body)["id"], "timeout": 30}),
        lambda body: text(f"Done: {last_task(body)['result']['output'].strip()}"),
    )

    result = cli(plane.url, llm, "exec", "write the report", "-y", "--local", "--cwd", str(workdir))

    assert result.exit_code == 0, result.output
    assert (workdir / "out.txt").read_text() == "written by the task"
    assert "Done: read: hello from the project" in result.output
    task = only_task(plane.url)
    assert task["queue"].startswith("local-") and task["status"] == "completed"
    assert task["source"] == "cli" and task["requested_by"] == user_name()
    system = llm.requests[0]["messages"][0]["content"]
    assert f"queue `{task['queue']}`" in system and str(workdir) in system
    assert queue_names(plane.url) == ["remote"]


def test_exec_prompt_json_prints_one_object_per_event_and_ends_with_the_result(
    plane: LiveServer, llm: ChatLLM, workdir: Path
) -> None:
    llm.play(
        tool_call("create_task", {"agent": "failing", "prompt": "try it"}, say="Plan: run failing."),
        text("Started it."),
    )

    result = cli(plane.url, llm, "exec", "try it", "-y", "--local", "--cwd", str(workdir), "--json")

    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    types = [line["type"] for line in lines]
    assert types[0] == "local" and types[-1] == "result"
    assert {"text", "tool_call", "tool_result", "task", "event"} <= set(types)
    end = lines[-1]
    assert end["exit_code"] == 1 and end["task"]["status"] == "failed"
    assert end["reply"] == "Plan: run failing.Started it."
    assert end["task_ids"] == [end["task"]["id"]]
    statuses = [
        e["event"]["data"]["status"] for e in lines if e["type"] == "event" and e["event"]["kind"] == "status"
    ]
    assert statuses[-1] == "failed"
    assert queue_names(plane.url) == ["remote"]


def test_exec_prompt_json_without_a_model_says_so_in_json(plane: LiveServer) -> None:
    result = cli(plane.url, None, "exec", "anything", "--json")
    assert result.exit_code == 2
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert line["type"] == "error" and "META_AGENT_MODEL" in line["message"]


# --- queues delete -----------------------------------------------------------------------


def test_queue_delete_refuses_while_work_waits_then_deletes(plane: LiveServer) -> None:
    with api(plane.url) as c:
        assert c.post("/worker-queues", json={"name": "busy"}).status_code == 201
        task = c.post("/tasks", json={"agent": "writer", "queue": "busy", "prompt": "x"}).json()

        refused = cli(plane.url, None, "queues", "delete", "busy")
        assert refused.exit_code == 1
        assert "unfinished" in refused.output and "queue_in_use" in refused.output
        assert "Traceback" not in refused.output

        assert c.post(f"/tasks/{task['id']}/cancel").json()["status"] == "cancelled"
        deleted = cli(plane.url, None, "queues", "delete", "busy", "--json")
        assert deleted.exit_code == 0, deleted.output
        assert json.loads(deleted.stdout) == {"deleted": "busy"}
        assert c.get("/worker-queues/busy").status_code == 404
        assert c.delete("/worker-queues/busy").json()["code"] == "queue_not_found"
        # A queue an agent defaults to stays.
        assert c.patch("/agents/writer", json={"default_queue": "remote"}).status_code == 200
        in_use = c.delete("/worker-queues/remote")
        assert in_use.status_code == 409 and "agent 'writer'" in in_use.json()["detail"]


# --- the meta agent over the control plane's MCP endpoint -----------------------------------


def test_exec_over_http_mcp_creates_the_task_as_the_cli_user(
    plane: LiveServer, llm: ChatLLM, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tools.server

    def no_in_process_tools(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the tools must be reached over HTTP, not built in this process")

    monkeypatch.setattr(tools.server, "build_server", no_in_process_tools)
    llm.play(
        tool_call("list_queues", {}),
        tool_call("create_task", {"agent": "writer", "prompt": "write it"}, say=PLAN),
        lambda body: tool_call("stream_task", {"task_id": last_task(body)["id"], "timeout": 30}),
        lambda body: text(f"Finished: {last_task(body)['status']}"),
    )

    result = cli(plane.url, llm, "exec", "write the report", "-y", "--mcp", "--local", "--cwd", str(workdir))

    assert result.exit_code == 0, result.output
    assert "Finished: completed" in result.output
    task = only_task(plane.url)
    assert task["source"] == "cli" and task["requested_by"] == user_name()
    assert task["queue"].startswith("local-")
    assert (workdir / "out.txt").exists()
    assert queue_names(plane.url) == ["remote"]


def test_mcp_url_must_be_http(plane: LiveServer, llm: ChatLLM) -> None:
    result = cli(plane.url, llm, "exec", "hi", "-y", "--mcp-url", "ftp://x")
    assert result.exit_code == 2 and "not an http(s) URL" in result.output


# --- Ctrl-C ------------------------------------------------------------------------------

SLEEPER = {
    "name": "sleeper",
    "description": "Starts, then takes forever",
    "runtime": "command",
    "command": [
        "python3",
        "-c",
        # Its pid as its own PID namespace numbers it (it runs sandboxed), and that namespace.
        "import os, pathlib, time; pid = f\"{os.getpid()} {os.readlink('/proc/self/ns/pid')}\"; "
        "pathlib.Path('started').write_text(pid); time.sleep(600)",
    ],
}


def test_ctrl_c_cancels_the_local_execution_kills_its_command_and_deletes_the_queue(
    plane: LiveServer, workdir: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    with api(plane.url) as c:
        assert c.post("/agents", json=SLEEPER).status_code == 201
    log = tmp_path / "cli.log"
    cli_proc = spawn(
        ["-m", "cli.main", "exec", "agent", "sleeper", "go", "--local", "--cwd", str(workdir)],
        log=log,
        META_AGENT_URL=plane.url,
    )
    procs.append(cli_proc)
    started = workdir / "started"
    wait_for(lambda: started.exists() and started.read_text(), 30, "the command to start in DIR")
    inner, ns = started.read_text().split()

    cli_proc.send_signal(signal.SIGINT)

    assert cli_proc.wait(30) == 130, log.read_text()
    assert gone(ns, int(inner))
    task = only_task(plane.url)
    assert task["status"] == "cancelled" and task["queue"].startswith("local-")
    assert queue_names(plane.url) == ["remote"]
    assert "Traceback" not in log.read_text()


def test_exec_agent_local_llm_tools_work_in_cwd(plane: LiveServer, llm: ChatLLM, workdir: Path) -> None:
    agent = {
        "name": "coder",
        "description": "An llm agent with a shell",
        "runtime": "llm",
        "model": "openai/fake",
        "tools": ["bash", "write_file"],
    }
    with api(plane.url) as c:
        assert c.post("/agents", json=agent).status_code == 201
    llm.play(
        tool_call("bash", {"command": "cp input.txt copy.txt && pwd"}),
        tool_call("write_file", {"path": "notes.md", "content": "done"}),
        text("Copied."),
    )

    result = cli(plane.url, llm, "exec", "agent", "coder", "copy the input", "--local", "--cwd", str(workdir))

    assert result.exit_code == 0, result.output
    assert (workdir / "copy.txt").read_text() == "hello from the project\n"
    assert (workdir / "notes.md").read_text() == "done"
    bash_result = next(m for m in llm.requests[1]["messages"] if m["role"] == "tool")
    assert str(workdir) in bash_result["content"]  # pwd ran in DIR
    assert queue_names(plane.url) == ["remote"]


def test_exec_over_http_mcp_sends_the_key_and_a_refused_key_is_one_clear_line(
    plane: LiveServer, llm: ChatLLM, workdir: Path
) -> None:
    with api(plane.url) as c:
        made = c.post("/keys", json={"name": "ops-admin", "scopes": ["admin"]})
        assert made.status_code == 201
        key = made.json()["key"]
    llm.play(
        tool_call("create_task", {"agent": "writer", "prompt": "write it"}, say=PLAN),
        text("Started."),
    )

    ok = cli(
        plane.url, llm, "--api-key", key, "exec", "write it", "-y", "--mcp", "--local", "--cwd", str(workdir)
    )
    refused = cli(plane.url, llm, "--api-key", "ma_wrong", "exec", "write it", "-y", "--mcp")

    assert ok.exit_code == 0, ok.output
    with api(plane.url) as c:
        [task] = c.get("/tasks", headers={"Authorization": f"Bearer {key}"}).json()["items"]
    assert task["source"] == "cli" and task["requested_by"] == user_name()  # not the key's name
    assert refused.exit_code == 1
    assert "refused the API key" in refused.output and f"{plane.url}/mcp" in refused.output
    assert "Traceback" not in refused.output
