"""Agent policies in the `llm` runtime: deny rules fail the task naming the rule; approval-
required tools wait for a human, and both answers are honoured."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.llm_server import FakeLLM, text, tool_call
from tests.support import LiveServer
from tests.worker.llm_support import llm_agent, new_task, tool_events, wait_status, worker_thread
from worker.policy import Policy
from worker.runtime import TaskFailed


def test_denied_command_fails_the_task_naming_the_rule(
    server: LiveServer, llm: FakeLLM, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    llm.script(tool_call("bash", {"command": f"rm -rf {victim}"}, "call_rm"), text("should never be asked"))
    with server.client() as c:
        llm_agent(c, tools=["bash"], policy={"deny_commands": [r"\brm\s+-rf\b", "shutdown"]})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c, prompt="clean up")
        task = wait_status(c, tid, "failed", "completed")
        assert task["status"] == "failed"
        assert task["error"]["code"] == "policy_violation"
        assert "deny_commands" in task["error"]["message"] and r"\brm\s+-rf\b" in task["error"]["message"]
        assert tool_events(c, tid)["call_rm"]["completed"]["status"] == "denied"
    assert victim.exists()
    assert len(llm.requests) == 1  # the model did not get to try around the rule


def test_tool_outside_allowed_tools_fails_the_task(server: LiveServer, llm: FakeLLM, tmp_path: Path) -> None:
    llm.script(tool_call("write_file", {"path": "x.txt", "content": "x"}, "call_w"))
    with server.client() as c:
        llm_agent(c, tools=["bash", "write_file"], policy={"allowed_tools": ["bash"]})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed")
        assert task["error"]["code"] == "policy_violation" and "allowed_tools" in task["error"]["message"]
    # Only the allowed tools were offered to the model.
    assert [t["function"]["name"] for t in llm.requests[0]["tools"]] == ["bash"]


def test_max_steps_budget(server: LiveServer, llm: FakeLLM, tmp_path: Path) -> None:
    llm.script(
        tool_call("bash", {"command": "true"}, "call_1"),
        tool_call("bash", {"command": "true"}, "call_2"),
    )
    with server.client() as c:
        llm_agent(c, tools=["bash"], policy={"max_steps": 2})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed")
        assert task["error"]["code"] == "policy_violation" and "max_steps" in task["error"]["message"]
    assert len(llm.requests) == 2


def test_approval_required_tool_runs_after_approve_and_is_skipped_after_deny(
    server: LiveServer, llm: FakeLLM, tmp_path: Path, shared_tmp: Path
) -> None:
    marker = shared_tmp / "ran"  # written by the sandboxed tool: not in root's tmp_path
    command = f"echo approved >> {marker}"
    with server.client() as c:
        llm_agent(c, tools=["bash"], policy={"require_approval": ["bash"]})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        for answer in ("approve", "deny"):
            llm.script(tool_call("bash", {"command": command}, f"call_{answer}"))
            tid = new_task(c, prompt=f"case {answer}")
            task = wait_status(c, tid, "requires_input")
            pending = task["pending_input"]
            assert pending["choices"] == ["approve", "deny"] and pending["ref"] == f"call_{answer}"
            assert command in pending["question"] and "bash" in pending["question"]
            assert not marker.exists() or answer == "deny"  # nothing ran before the answer
            llm.script(text(f"finished after {answer}"))
            assert c.post(f"/tasks/{tid}/input", json={"answer": answer}).status_code == 200
            task = wait_status(c, tid, "completed", "failed")
            assert task["status"] == "completed", task
            completed = tool_events(c, tid)[f"call_{answer}"]["completed"]
            result = [m for m in llm.requests[-1]["messages"] if m["role"] == "tool"][-1]["content"]
            if answer == "approve":
                assert completed["status"] == "success"
                assert marker.read_text() == "approved\n"
                assert result.startswith("exit code 0")
            else:
                assert completed["status"] == "denied"
                assert "denied by the user" in result
                assert marker.read_text() == "approved\n"  # not run a second time


def test_max_seconds_stops_a_long_tool(server: LiveServer, llm: FakeLLM, tmp_path: Path) -> None:
    llm.script(tool_call("bash", {"command": "sleep 30"}, "call_sleep"))
    with server.client() as c:
        llm_agent(c, tools=["bash"], policy={"max_seconds": 1})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        tid = new_task(c)
        task = wait_status(c, tid, "failed", "completed", timeout=15)
        assert task["error"]["code"] == "policy_violation" and "max_seconds" in task["error"]["message"]
        assert tool_events(c, tid)["call_sleep"]["completed"]["status"] == "interrupted"


def test_policy_rules_and_budgets() -> None:
    policy = Policy.of(
        {"policy": {"max_steps": 3, "max_seconds": 10, "max_cost": 0.5, "allowed_tools": ["bash"]}}
    )
    policy.check_budget(2, 9.9, 0.49)
    for args, rule in [((3, 0, 0), "max_steps"), ((0, 10, 0), "max_seconds"), ((0, 0, 0.5), "max_cost")]:
        with pytest.raises(TaskFailed) as err:
            policy.check_budget(*args)
        assert err.value.code == "policy_violation" and rule in err.value.message
    with pytest.raises(TaskFailed, match="allowed_tools"):
        policy.check_call("http_request", {"url": "http://x"})
    with pytest.raises(TaskFailed) as bad:
        Policy.of({"policy": {"deny_commands": ["("]}})
    assert bad.value.code == "invalid_policy"


def test_an_old_approval_never_approves_a_later_call_with_the_same_id(
    server: LiveServer, llm: FakeLLM, tmp_path: Path, shared_tmp: Path
) -> None:
    """Providers reuse call ids (`call_0` every turn): answers are keyed by the question the
    server issued, and only the parked call reads its answer."""
    first, second = shared_tmp / "first", shared_tmp / "second"  # the bash tool runs sandboxed
    with server.client() as c:
        llm_agent(c, tools=["bash"], policy={"require_approval": ["bash"]})
    with server.client() as c, worker_thread(server.url, llm, tmp_path / "ws"):
        llm.script(
            tool_call("bash", {"command": f"touch {first}"}, "call_0"),
            tool_call("bash", {"command": f"touch {second}"}, "call_0"),
            text("done"),
        )
        tid = new_task(c, prompt="two risky calls")
        asked = wait_status(c, tid, "requires_input")["pending_input"]
        assert asked["key"] != "call_0" and asked["ref"] == "call_0"  # issued by the server
        assert (
            c.post(f"/tasks/{tid}/input", json={"answer": "approve", "key": asked["key"]}).status_code == 200
        )

        again = wait_status(c, tid, "requires_input")["pending_input"]
        assert first.exists() and not second.exists()  # the second call waits for its own answer
        assert again["key"] != asked["key"] and str(second) in again["question"]
        stale = c.post(f"/tasks/{tid}/input", json={"answer": "approve", "key": asked["key"]})
        assert stale.status_code == 409 and stale.json()["code"] == "stale_question"
        assert c.get(f"/tasks/{tid}").json()["status"] == "requires_input"  # nothing changed
        assert c.post(f"/tasks/{tid}/input", json={"answer": "deny", "key": again["key"]}).status_code == 200
        assert wait_status(c, tid, "completed", "failed")["status"] == "completed"
        assert not second.exists()
