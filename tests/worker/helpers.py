"""A TaskContext that records what a runtime does, and process-liveness checks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from worker.runtime import TaskContext


class Recorder:
    """Collects emitted events and artifacts; lets a test wait for a given log line."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.artifacts: dict[str, tuple[bytes, str]] = {}
        self._waiters: list[tuple[str, asyncio.Future[str]]] = []

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))
        line = str(data.get("line", ""))
        for prefix, fut in list(self._waiters):
            if line.startswith(prefix) and not fut.done():
                fut.set_result(line)

    async def save_artifact(self, name: str, content: bytes, media_type: str) -> None:
        self.artifacts[name] = (content, media_type)

    async def line(self, prefix: str, timeout: float = 5.0) -> str:
        """The first log line starting with `prefix` (already seen or still to come)."""
        for kind, data in self.events:
            if kind == "log" and str(data.get("line", "")).startswith(prefix):
                return str(data["line"])
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append((prefix, fut))
        return await asyncio.wait_for(fut, timeout)

    def lines(self, stream: str = "stdout") -> list[str]:
        return [d["line"] for k, d in self.events if k == "log" and d.get("stream") == stream]


def make_ctx(
    workspace: Path,
    command: list[str] | None,
    *,
    parameters: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    prompt: str = "do it",
    timeout: float | None = 30,
) -> tuple[TaskContext, Recorder]:
    rec = Recorder()
    ctx = TaskContext(
        task={"id": "task-1", "prompt": prompt, "parameters": parameters or {}},
        agent={
            "name": "probe",
            "runtime": "command",
            "command": command,
            "parameters": spec or {},
            "timeout_seconds": timeout,
        },
        token="tok-1",
        workspace=workspace,
        inputs=inputs or {},
        on_event=rec.emit,
        on_artifact=rec.save_artifact,
    )
    return ctx, rec


async def wait_gone(pidfd: int, timeout: float = 5.0) -> None:
    """Wait until the process behind `pidfd` has exited (a pidfd turns readable then)."""
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    loop.add_reader(pidfd, lambda: gone.done() or gone.set_result(None))
    try:
        await asyncio.wait_for(gone, timeout)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def alive(pid: int) -> bool:
    """True if `pid` runs (a zombie, dead but not reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


# Tool processes run in their own PID namespace (worker.sandbox): a pid they print is theirs.
# They print it with `readlink /proc/self/ns/pid`, and these map it to this side.
NS_PID = "$(readlink /proc/self/ns/pid)"


def outside_pid(ns: str, inner: int) -> int:
    """Our pid of the process numbered `inner` in PID namespace `ns`."""
    if ns == os.readlink("/proc/self/ns/pid"):
        return inner
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit() or os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/status") as f:
                nspid = next(line for line in f if line.startswith("NSpid:")).split()[1:]
        except (OSError, StopIteration):
            continue
        if int(nspid[-1]) == inner:
            return int(entry)
    raise ProcessLookupError(f"no process {inner} in {ns}")


def gone(ns: str, inner: int) -> bool:
    """True once that process (and, in a namespace of its own, every process there) is gone."""
    if ns == os.readlink("/proc/self/ns/pid"):
        return not alive(inner)
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/ns/pid") == ns and alive(int(entry)):
                return False
        except OSError:
            continue
    return True
