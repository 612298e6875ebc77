"""Durable steps: a worker SIGKILLed in the middle of an `llm` task; the re-claim resumes from
the last checkpoint, never re-runs a finished tool call and reports the unfinished one as
interrupted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.fakes.llm_server import FakeLLM, text, tool_calls
from tests.support import LiveServer, wait_for
from tests.worker.helpers import NS_PID, outside_pid
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

pytestmark = pytest.mark.xdist_group("processes")


def test_sigkilled_worker_resumes_from_checkpoint_without_rerunning_tools(
    server: LiveServer, llm: FakeLLM, tmp_path: Path, shared_tmp: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    once, pidfile = shared_tmp / "once", shared_tmp / "pid"
    llm.script(
        tool_calls(
            [
                ("bash", {"command": f"echo ran >> {once}"}, "call_done"),
                (
                    "bash",
                    {"command": f"echo $$ {NS_PID} > {pidfile}; echo started; sleep 60 & wait"},
                    "call_hang",
                ),
            ]
        ),
        text("Recovered: the first step is done, the second was interrupted."),
    )
    with server.client() as c:
        llm_agent(c, tools=["bash"])
    a = spawn_worker(server.url, llm, tmp_path / "wa")
    procs.append(a)
    try:
        with server.client() as c:
            tid = new_task(c, prompt="two steps")
            wait_for(lambda: tool_events(c, tid).get("call_hang", {}).get("output"), 30, "the second tool")
            os.killpg(a.pid, signal.SIGKILL)
            a.wait(10)
            with worker_thread(server.url, llm, tmp_path / "wb"):
                task = wait_status(c, tid, "completed", "failed", timeout=30)
            assert task["status"] == "completed", task
            assert task["attempt"] == 2
            assert len(set(running_workers(c, tid))) == 2

            assert once.read_text() == "ran\n"  # the finished call was not run again
            tools = tool_events(c, tid)
            assert tools["call_done"]["completed"]["status"] == "success"
            assert tools["call_hang"]["completed"]["status"] == "interrupted"
            by_attempt = {
                (e["kind"], e["data"]["tool_call_id"]): e["attempt"]
                for e in events(c, tid)
                if e["kind"] in ("tool_started", "tool_completed")
            }
            assert by_attempt == {
                ("tool_started", "call_done"): 1,
                ("tool_completed", "call_done"): 1,
                ("tool_started", "call_hang"): 1,
                ("tool_completed", "call_hang"): 2,
            }
    finally:
        if pidfile.exists():  # in case the tool outlived its SIGKILLed worker
            inner, ns = pidfile.read_text().split()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(outside_pid(ns, int(inner)), signal.SIGKILL)

    # The model got the finished result and the interruption, once each, in call order.
    assert len(llm.requests) == 2
    results = [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == ["call_done", "call_hang"]
    assert results[0]["content"].startswith("exit code 0")
    assert results[1]["content"].startswith("interrupted") and "not run again" in results[1]["content"]
