"""Subprocesses in their own process group and sandbox, with an allow-listed environment.

Shared by the `command` runtime and the `bash` tool of `llm` agents. A process runs in a new
session (so its pid is its group id) inside the worker's sandbox (worker.sandbox); a timeout
or a cancel kills the whole group: SIGTERM, then SIGKILL after a grace period. The
environment passed on is built from an allow-list, never the worker's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from worker.launcher import LaunchFailed, shared
from worker.sandbox import current, jail_argv

__all__ = [
    "ENV_PASSTHROUGH",
    "GroupRun",
    "base_environment",
    "make_workspace",
    "run_in_group",
    "signal_group",
]

ENV_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
KILL_GRACE_SECONDS = 2.0
# A process that left the group (setsid) can keep our pipes open; we stop reading after this.
DRAIN_SECONDS = 1.0

log = logging.getLogger(__name__)

Pump = Callable[[asyncio.StreamReader, str], Coroutine[object, object, None]]


def base_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed variables of `base` (default: this process's environment)."""
    source = os.environ if base is None else base
    # One lookup a name: os.environ encodes the name for each of `in` and `[]`.
    env = {k: v for k in ENV_PASSTHROUGH if (v := source.get(k)) is not None}
    env.setdefault("PATH", os.defpath)
    return env


def make_workspace(workspace: Path) -> None:
    """`workspace` and its `artifacts` directory: two mkdir calls. (pathlib's `parents=True`
    tried the child first, failed, made the parent, tried again: ~130 µs of a command's
    start on ext4 against ~60.) A workspace root that is missing is made too."""
    for d in (workspace, workspace / "artifacts"):
        try:
            os.mkdir(d)
        except FileExistsError:
            pass
        except FileNotFoundError:
            d.mkdir(parents=True, exist_ok=True)


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Signals the exit itself: on 3.11 `Process.wait()` also waits for the pipes to close,
    which a leftover background process can hold open forever."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


@dataclass
class GroupRun:
    """How a process group run ended: `exit`, `timeout` or `cancelled`, and the exit code."""

    ended: str
    returncode: int | None


async def run_in_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    pump: Pump,
    cancelled: asyncio.Event,
    timeout: float | None = None,
    kill_grace: float = KILL_GRACE_SECONDS,
) -> GroupRun:
    """Run `argv` in a new process group until it exits, `timeout` passes or `cancelled` is set.

    `pump(reader, "stdout" | "stderr")` consumes each pipe. Whatever the command left
    running in its group is killed too, or it would hold the pipes open. It runs in the
    worker's sandbox (worker.sandbox). Raises FileNotFoundError / OSError / ValueError when
    the process cannot start, SandboxUnavailable when no sandbox can be had.
    """
    started = await _start(argv, cwd, env)
    pgid = started.pgid
    readers = [
        asyncio.create_task(pump(started.stdout, "stdout")),
        asyncio.create_task(pump(started.stderr, "stderr")),
    ]
    try:
        ended = await _wait(started.exited, cancelled, timeout)
        await _kill(pgid, started.exited, kill_grace if ended != "exit" else 0.0)
        await asyncio.wait(readers, timeout=DRAIN_SECONDS)
    finally:
        if not started.exited.is_set():  # we are being cancelled ourselves: no time for grace
            signal_group(pgid, signal.SIGKILL)
            # Still reap it before letting go (a killed child exits at once): an unreaped
            # one lingers as a zombie and surfaces later as a ResourceWarning.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.shield(asyncio.wait_for(started.exited.wait(), 2.0))
        for r in readers:
            r.cancel()
        started.close()
    return GroupRun(ended, started.returncode())


@dataclass
class _Started:
    """A started process group, however it was started."""

    pgid: int
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader
    exited: asyncio.Event
    returncode: Callable[[], int | None]
    close: Callable[[], None]


async def _start(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> _Started:
    """Through the launch server when sandboxed (worker.launcher: no interpreter start per
    tool); as its own `jail.py` process when the server fails; directly when the sandbox is off."""
    spec = current().spec(argv, cwd, env)
    if spec is not None:
        try:
            launched = await shared().start(spec, argv, env)
        except LaunchFailed as exc:
            log.warning("%s; starting the tool with its own launcher", exc)
        else:
            return _Started(
                launched.pgid,
                launched.stdout,
                launched.stderr,
                launched.exited,
                lambda: launched.returncode,
                launched.close,
            )
    return await _exec(argv if spec is None else jail_argv(spec, argv), cwd, env)


async def _exec(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> _Started:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.subprocess_exec(
        lambda: _Protocol(loop),
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proto.stdout is not None and proto.stderr is not None
    # == the group id, thanks to start_new_session
    return _Started(
        transport.get_pid(),
        proto.stdout,
        proto.stderr,
        proto.exited,
        transport.get_returncode,
        transport.close,
    )


async def _wait(exited: asyncio.Event, cancelled: asyncio.Event, timeout: float | None) -> str:
    exit_wait = asyncio.create_task(exited.wait())
    stop = asyncio.create_task(cancelled.wait())
    try:
        done, _ = await asyncio.wait({exit_wait, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exit_wait.cancel()
        stop.cancel()
    if exit_wait in done:
        return "exit"
    return "cancelled" if stop in done else "timeout"


async def _kill(pgid: int, exited: asyncio.Event, grace: float) -> None:
    signal_group(pgid, signal.SIGTERM)
    if grace > 0 and not exited.is_set():
        try:
            await asyncio.wait_for(exited.wait(), grace)
        except TimeoutError:
            pass
    signal_group(pgid, signal.SIGKILL)  # the group outlives its leader: stragglers too
    await exited.wait()
