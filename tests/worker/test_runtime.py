"""The runtime registry and TaskContext."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT
from worker.runtime import InputRequested, Outcome, TaskContext, TaskFailed, get_runtime, register_runtime


def ctx_for(tmp_path: Path, **task: object) -> TaskContext:
    return TaskContext(
        task={"id": "t1", **task}, agent={"runtime": "noop"}, token="tok-1", workspace=tmp_path
    )


async def test_noop_echoes_the_prompt(tmp_path):
    outcome = await get_runtime("noop").run(ctx_for(tmp_path, prompt="ping"))
    assert outcome == Outcome({"output": "ping"})


def test_unknown_runtime_fails_the_task():
    with pytest.raises(TaskFailed) as err:
        get_runtime("quantum")
    assert err.value.code == "unknown_runtime"


def test_a_registered_runtime_that_cannot_be_imported_fails_the_task():
    register_runtime("broken", "worker.runtimes.does_not_exist:Nope")
    with pytest.raises(TaskFailed) as err:
        get_runtime("broken")
    assert err.value.code == "unknown_runtime" and "not available" in err.value.message


def test_runtimes_are_imported_only_when_asked_for():
    # The registry names `llm`, but importing the worker must not import it, and even the
    # llm runtime loads litellm (seconds) only for its first task. A fresh interpreter:
    # other tests of this process import them on purpose.
    code = (
        "import sys, worker.main, worker.task, cli.main\n"
        "assert 'worker.runtimes.llm' not in sys.modules, 'worker imports the llm runtime'\n"
        "import worker.runtimes.llm\n"
        "assert 'litellm' not in sys.modules, 'the llm runtime imports litellm at import'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr


async def test_request_input_carries_the_saved_checkpoint(tmp_path):
    saved = []

    async def on_checkpoint(data: object) -> None:
        saved.append(data)

    ctx = ctx_for(tmp_path)
    ctx.on_checkpoint = on_checkpoint
    await ctx.save_checkpoint({"step": 3})
    with pytest.raises(InputRequested) as asked:
        ctx.request_input("Which cluster?", choices=["prod", "staging"], key="cluster")
    assert saved == [{"step": 3}]
    assert (asked.value.question, asked.value.choices, asked.value.key) == (
        "Which cluster?",
        ["prod", "staging"],
        "cluster",
    )
    assert asked.value.checkpoint == {"step": 3}
