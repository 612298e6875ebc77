"""Durable human input for `llm` agents: ask_user parks the task in Requires Input, releases
the worker, and resumes from the checkpoint with the answer on another worker process
(approvals: test_llm_policy.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fakes.llm_server import FakeLLM, text, tool_call
from tests.support import LiveServer
from tests.worker.llm_support import (
    events,
    llm_agent,
    new_task,
    running_workers,
    spawn_worker,
    tool_events,
    wait_status,
    worker_thread,
)


@pytest.mark.xdist_group("processes")
def test_ask_user_parks_the_task_frees_the_slot_and_resumes_on_another_worker_process(
    server: LiveServer, llm: FakeLLM, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    question = {"question": "Which environment should I deploy to?", "choices": ["staging", "production"]}
    with server.client() as c:
        llm_agent(c, tools=["ask_user", "bash"])
        llm_agent(c, "helper", tools=[])
        llm.script(tool_call("ask_user", question, "call_ask", say="I need to know where."))
        with worker_thread(server.url, llm, tmp_path / "wa", concurrency=1) as first:
            tid = new_task(c, prompt="deploy the app")
            task = wait_status(c, tid, "requires_input")
            pending = task["pending_input"]
            assert pending == {**question, "ref": "call_ask", "key": pending["key"]}
            assert pending["key"].startswith("q_")  # issued by the server, not the model's call id
            assert task["worker_id"] is None
            # The worker holds no slot for it: another task runs on the same 1-slot worker.
            llm.script(text("helper done"))
            other = new_task(c, "helper", prompt="something else")
            assert wait_status(c, other, "completed")["result"] == {"output": "helper done"}
            first_id = first.worker_id

        llm.script(text("Deployed to staging."))
        procs.append(spawn_worker(server.url, llm, tmp_path / "wb"))
        assert c.post(f"/tasks/{tid}/input", json={"answer": "staging"}).status_code == 200
        task = wait_status(c, tid, "completed", "failed", timeout=60)
        assert task["status"] == "completed", task
        assert task["result"] == {"output": "Deployed to staging."}

    with server.client() as c:
        runners = running_workers(c, tid)
        assert len(runners) == 2 and runners[0] == first_id and runners[1] != first_id
        ask = tool_events(c, tid)["call_ask"]
        assert ask["started"]["name"] == "ask_user" and ask["completed"]["status"] == "success"
        assert ask["completed"]["output"] == "staging"
        kinds = [e["kind"] for e in events(c, tid)]
        assert kinds.index("input_requested") < kinds.index("input_received")
    # The resumed conversation carries the whole history and the answer as the tool result.
    resumed = llm.requests[-1]["messages"]
    assert resumed[0] == {"role": "user", "content": "deploy the app"}
    assert resumed[1]["role"] == "assistant" and resumed[1]["tool_calls"][0]["id"] == "call_ask"
    assert resumed[2] == {"role": "tool", "tool_call_id": "call_ask", "content": "The user answered: staging"}
