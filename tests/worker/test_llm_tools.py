"""The toolkit of `llm` agents, run directly against a recording TaskContext."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.worker.helpers import NS_PID, Recorder, gone, make_ctx, outside_pid, wait_gone
from worker.builtins import BUILTIN, ToolEnv, ToolError, schema
from worker.builtins.files import ReadFile, SaveArtifact, WriteFile
from worker.builtins.shell import Bash, clip
from worker.provider import DeltaCoalescer


def env_for(tmp_path: Path) -> tuple[ToolEnv, Recorder, list[str]]:
    ctx, rec = make_ctx(tmp_path / "ws", None)
    chunks: list[str] = []
    return ToolEnv(ctx, "call_1", chunks.append), rec, chunks


async def test_bash_runs_in_the_workspace_streams_and_filters_the_environment(tmp_path: Path) -> None:
    env, _, chunks = env_for(tmp_path)
    bash = Bash(base_env={"PATH": "/usr/bin:/bin", "META_AGENT_API_KEY": "secret-key", "HOME": "/root"})
    out = await bash.run({"command": 'pwd; echo "key=${META_AGENT_API_KEY:-none}"; echo task=$TASK_ID'}, env)
    assert out.startswith("exit code 0\n")
    assert f"{tmp_path / 'ws'}\nkey=none\ntask=task-1\n" in out
    assert "key=none" in "".join(chunks)


async def test_bash_failure_and_timeout_are_told_to_the_model(tmp_path: Path) -> None:
    env, _, _ = env_for(tmp_path)
    with pytest.raises(ToolError, match=r"^exit code 3\nbad"):
        await Bash().run({"command": "echo bad; exit 3"}, env)
    t0 = time.monotonic()
    with pytest.raises(ToolError, match=r"timed out after 0\.3 s"):
        await Bash().run({"command": f"echo $$ {NS_PID} > pid; sleep 30", "timeout": 0.3}, env)
    assert time.monotonic() - t0 < 5
    inner, ns = (tmp_path / "ws" / "pid").read_text().split()
    assert gone(ns, int(inner))


async def test_bash_cancellation_kills_the_process_group(tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path / "ws", None)
    first: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    env = ToolEnv(ctx, "call_1", lambda chunk: first.done() or first.set_result(chunk))
    run = asyncio.create_task(Bash().run({"command": f"echo $$ {NS_PID}; sleep 30 & wait"}, env))
    inner, ns = (await asyncio.wait_for(first, 10)).split()[:2]
    pid = outside_pid(ns, int(inner))
    pidfd = os.pidfd_open(pid)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await wait_gone(pidfd, 5)


def test_long_output_keeps_head_and_tail() -> None:
    text = "a" * 10_000 + "b" * 10_000
    short = clip(text, 1000)
    assert short.startswith("a" * 500) and short.endswith("b" * 500) and "19000 characters left out" in short


async def test_files_stay_inside_the_workspace(tmp_path: Path) -> None:
    env, _, _ = env_for(tmp_path)
    assert (
        await WriteFile().run({"path": "sub/notes.txt", "content": "hi"}, env)
        == "wrote 2 bytes to sub/notes.txt"
    )
    assert await ReadFile().run({"path": "sub/notes.txt"}, env) == "hi"
    (tmp_path / "secret").write_text("s3cret")
    (tmp_path / "ws" / "link").symlink_to(tmp_path / "secret")
    for path in ("../secret", str(tmp_path / "secret"), "link", "sub/../../secret"):
        with pytest.raises(ToolError, match="outside the task workspace"):
            await ReadFile().run({"path": path}, env)
    with pytest.raises(ToolError, match="outside the task workspace"):
        await WriteFile().run({"path": "../evil", "content": "x"}, env)
    assert not (tmp_path / "evil").exists()


async def test_save_artifact_from_content_or_file(tmp_path: Path) -> None:
    env, rec, _ = env_for(tmp_path)
    await SaveArtifact().run({"name": "r.md", "content": "# R"}, env)
    await WriteFile().run({"path": "out.json", "content": "{}"}, env)
    await SaveArtifact().run({"name": "data/out.json", "path": "out.json"}, env)
    assert rec.artifacts == {"r.md": (b"# R", "text/markdown"), "data/out.json": (b"{}", "application/json")}
    with pytest.raises(ToolError):
        await SaveArtifact().run({"name": "../x", "content": "x"}, env)


def test_every_tool_has_a_valid_schema() -> None:
    for name, tool in BUILTIN.items():
        s = schema(tool)
        assert s["function"]["name"] == name and s["function"]["description"]
        assert s["function"]["parameters"]["type"] == "object"
        assert set(s["function"]["parameters"]["required"]) <= set(s["function"]["parameters"]["properties"])


async def test_deltas_are_coalesced_by_size_and_by_time() -> None:
    out: list[str] = []
    flushed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def emit(text: str) -> None:
        out.append(text)
        if not flushed.done():
            flushed.set_result(None)

    coalescer = DeltaCoalescer(emit, interval=0.05, size=10)
    for piece in ("ab", "cd", "efghij"):  # 10 characters: out at once
        coalescer.add(piece)
    assert out == ["abcdefghij"]
    flushed = asyncio.get_running_loop().create_future()
    coalescer.add("k")  # a short tail still leaves after `interval`
    await asyncio.wait_for(flushed, 5)
    assert out == ["abcdefghij", "k"]
    coalescer.flush()
    assert out == ["abcdefghij", "k"]
