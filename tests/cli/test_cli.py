"""`meta-agent exec` and `meta-agent execution ...` against the control plane stand-in."""

from __future__ import annotations

import json
import socket

import pytest

from cli import follow as follow_module
from tests.cli.test_cli_standin import (
    StandIn,
    run,
    standin_fixture,  # noqa: F401  (pytest finds the `standin` fixture among this module's names)
)

# --- executions --------------------------------------------------------------------------


def test_help_names_the_environment_variables() -> None:
    result = run(None, "--help")
    assert result.exit_code == 0
    assert "META_AGENT_URL" in result.output
    assert "META_AGENT_API_KEY" in result.output
    sub = run(None, "execution", "list", "--help")
    assert "META_AGENT_JSON" in sub.output
    assert "META_AGENT_EXECUTION_LIST_STATUS" in sub.output


def test_execution_list_json_parses_and_passes_filters(standin: StandIn) -> None:
    done = standin.add_task("echo", "say hi", source="cli")
    standin.add_task("broken", "break", source="slack")

    result = run(standin, "execution", "list", "--status", "completed", "--source", "cli", "--json")

    assert result.exit_code == 0, result.output
    page = json.loads(result.stdout)
    assert [t["id"] for t in page["items"]] == [done["id"]]
    assert page["next_cursor"] is None
    method, path, query, _ = standin.requests[-1]
    assert (method, path) == ("GET", "/api/v1/tasks")
    assert query["status"] == ["completed"] and query["source"] == ["cli"] and query["limit"] == ["50"]


def test_execution_list_table_shows_full_ids(standin: StandIn) -> None:
    first = standin.add_task("echo", "say hi\nand more")
    second = standin.add_task("broken", "break things")

    result = run(standin, "execution", "list")

    assert result.exit_code == 0, result.output
    for task in (first, second):
        assert task["id"] in result.stdout
    assert "completed" in result.stdout and "failed" in result.stdout
    assert "say hi" in result.stdout and "and more" not in result.stdout
    narrow = run(standin, "execution", "list", columns=80)
    assert all(task["id"] in narrow.stdout for task in (first, second))
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines())


def test_exec_agent_creates_and_prints_id_and_board_link(standin: StandIn) -> None:
    result = run(
        standin, "exec", "agent", "echo", "say hi", "--param", "env=staging", "-p", "q=a=b", "-q", "gpu"
    )

    assert result.exit_code == 0, result.output
    (task_id,) = standin.tasks
    assert task_id in result.stdout
    assert f"{standin.url}/#/tasks/{task_id}" in result.stdout
    _, _, _, body = standin.requests[-1]
    assert body["agent"] == "echo" and body["prompt"] == "say hi" and body["queue"] == "gpu"
    assert body["parameters"] == {"env": "staging", "q": "a=b"}
    assert body["source"] == "cli"


def test_exec_agent_json_prints_the_task(standin: StandIn) -> None:
    result = run(standin, "exec", "agent", "echo", "say hi", "--json")

    assert result.exit_code == 0, result.output
    task = json.loads(result.stdout)
    assert task["id"] in standin.tasks and task["agent"] == "echo"


def test_malformed_param_is_a_usage_error(standin: StandIn) -> None:
    result = run(standin, "exec", "agent", "echo", "hi", "--param", "bad")

    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output and "'bad'" in result.output
    assert standin.requests == []


def test_exec_without_agent_explains_the_meta_agent_is_not_there(standin: StandIn) -> None:
    result = run(standin, "exec", "deploy my app to staging")

    assert result.exit_code == 2
    assert "exec agent NAME" in result.stderr
    assert standin.requests == []


def test_exec_follow_streams_until_completed(standin: StandIn) -> None:
    result = run(standin, "exec", "agent", "echo", "say hi", "--follow")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "hello from echo" in out
    assert "Hello there" in out and out.count("Hello there") == 1  # deltas, not the message again
    assert "→ shell" in out and "✓ shell (0.2s)" in out
    assert "● running (from pending)" in out and "● completed (from running)\ntook 1.5s" in out


def test_exec_follow_exit_code_is_1_when_it_fails(standin: StandIn) -> None:
    result = run(standin, "exec", "agent", "broken", "break", "-f")

    assert result.exit_code == 1
    assert "[error] boom" in result.stdout
    assert "it broke (agent_error)" in result.stdout
    assert result.stdout.count("it broke") == 1  # on the status line, not again at the end


def test_exec_follow_json_prints_one_event_per_line(standin: StandIn) -> None:
    result = run(standin, "exec", "agent", "echo", "say hi", "-f", "--json")

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["seq"] for e in lines[:-1]] == list(range(1, len(lines)))
    assert lines[-1]["kind"] == "end" and lines[-1]["task"]["status"] == "completed"


def test_follow_asks_the_person_at_a_terminal(standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow_module, "stdin_is_tty", lambda: True)

    result = run(standin, "exec", "agent", "asker", "deploy", "-f", input="nope\n2\n")

    assert result.exit_code == 0, result.output
    assert standin.answers == ["production"]
    assert "Which environment?" in result.stdout and "2) production" in result.stdout
    assert "pick one of 1-2" in result.stdout
    assert "deploying to production" in result.stdout


def test_follow_without_a_terminal_says_how_to_answer(standin: StandIn) -> None:
    standin.board_answer = "staging"

    result = run(standin, "exec", "agent", "asker", "deploy", "-f")

    assert result.exit_code == 0, result.output
    (task_id,) = standin.tasks
    assert f'meta-agent execution respond {task_id} "staging"' in result.stderr
    assert "deploying to staging" in result.stdout


def test_logs_prints_events_and_exits_with_the_outcome(standin: StandIn) -> None:
    task = standin.add_task("broken", "break")

    human = run(standin, "execution", "logs", task["id"])
    as_json = run(standin, "execution", "logs", task["id"], "--json")
    followed = run(standin, "execution", "logs", task["id"], "--follow")

    assert human.exit_code == 1 and "[error] boom" in human.stdout
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert as_json.exit_code == 1 and events[-1]["data"]["status"] == "failed"
    assert followed.exit_code == 1 and "it broke" in followed.stdout


def test_get_cancel_retry_respond(standin: StandIn) -> None:
    waiting = standin.add_task("asker", "deploy")
    done = standin.add_task("echo", "hi")

    shown = run(standin, "execution", "get", waiting["id"])
    assert shown.exit_code == 0 and "Which environment?" in shown.stdout
    assert f"meta-agent execution respond {waiting['id']}" in shown.stdout

    answered = run(standin, "execution", "respond", waiting["id"], "staging", "--json")
    assert answered.exit_code == 0 and json.loads(answered.stdout)["id"] == waiting["id"]
    assert standin.answers == ["staging"]

    retried = run(standin, "execution", "retry", done["id"], "--json")
    new = json.loads(retried.stdout)
    assert new["retry_of"] == done["id"] and new["id"] != done["id"]

    cancelled = run(standin, "execution", "cancel", standin.add_task("asker", "x")["id"])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout


def test_unknown_id_prints_the_problem_and_exits_1(standin: StandIn) -> None:
    result = run(standin, "execution", "get", "no-such-task")

    assert result.exit_code == 1
    assert result.stderr.strip() == "error: task no-such-task not found (task_not_found)"
    assert "Traceback" not in result.output


def test_unreachable_server_names_the_url() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"

    result = run(None, "execution", "list", url=url)

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert url in message and "meta-agent serve" in message and "make run" in message
    assert "Traceback" not in result.output
