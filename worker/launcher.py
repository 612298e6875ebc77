"""The worker's side of the launch server (worker/jail_server.py).

Starting a sandboxed tool as its own `python jail.py` costs an interpreter start and a user
namespace per tool (15-80 ms). The launch server is started once per worker process and
forks a launcher per tool instead. `Launcher.start` hands it the tool's pipes and a
socket, writes the request (sandbox spec, argv, environment) and returns a `Launched`:
the process group to signal, the two pipes to read, and an event set when the tool ended.

The server holds no secret: it starts with an environment of PATH only and learns each
tool's environment from its request, in a forked child that execs the tool. It dies with
the worker (it exits when the worker's end of its socket closes).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LaunchFailed", "Launched", "Launcher", "shared", "use"]

log = logging.getLogger(__name__)

SERVER = Path(__file__).with_name("jail_server.py")


class LaunchFailed(OSError):
    """The launch server did not start the launcher; nothing ran (the caller may fall back)."""


@dataclass
class Launched:
    """A tool started by the launch server. `pgid` is its launcher's session and group."""

    pgid: int
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    returncode: int | None = None
    watch: asyncio.Task[None] | None = None
    _transports: list[asyncio.BaseTransport] = field(default_factory=lambda: [])

    def close(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
        for t in self._transports:
            t.close()


class Launcher:
    """One launch server, started on first use and again if it died."""

    def __init__(self, script: Path = SERVER) -> None:
        self.script = script
        self._lock = threading.Lock()
        self._server: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._atexit = False

    def _control(self) -> socket.socket:
        with self._lock:
            if self._server is None or self._server.poll() is not None or self._ctl is None:
                self._spawn()
            assert self._ctl is not None
            return self._ctl

    def _spawn(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._server = subprocess.Popen(
                [sys.executable, "-I", "-S", str(self.script), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env={"PATH": os.defpath},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                cwd="/",
                # Its own session: a Ctrl-C meant for the worker must not end every tool at once;
                # the worker stops tools itself, group by group.
                start_new_session=True,
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        if not self._atexit:
            atexit.register(self.stop)  # no server left running (or warned about) at exit
            self._atexit = True
        self._ctl = mine
        log.debug("launch server started (pid %d)", self._server.pid)

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        server = self._server
        return server.pid if server is not None and server.poll() is None else None

    def prestart(self) -> None:
        """Start the server now, so the first tool does not wait for Python to start."""
        self._control()

    def stop(self) -> None:
        with self._lock:
            if self._ctl is not None:
                self._ctl.close()  # the server exits when it sees the end
                self._ctl = None
            if self._server is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._server.wait(5)
                self._server = None

    def _send(self, fds: Sequence[int]) -> None:
        for attempt in (1, 2):
            ctl = self._control()
            try:
                socket.send_fds(ctl, [b"L"], list(fds))
                return
            except OSError as exc:  # the server died since we looked: start another, once
                if attempt == 2:
                    raise LaunchFailed(f"the launch server is gone: {exc}") from exc
                with self._lock:
                    if self._server is not None:
                        self._server.kill()
                        self._server.wait(5)
                        self._server = None

    async def start(self, spec: Mapping[str, Any], argv: Sequence[str], env: Mapping[str, str]) -> Launched:
        """Start `argv` in the sandbox `spec` with `env`; raises LaunchFailed if it did not start."""
        loop = asyncio.get_running_loop()
        payload = json.dumps({"spec": dict(spec), "argv": list(argv), "env": dict(env)}).encode()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        mine, theirs = socket.socketpair()
        try:
            try:
                self._send([out_w, err_w, theirs.fileno()])
            finally:
                for fd in (out_w, err_w):
                    os.close(fd)
                theirs.close()
            mine.setblocking(False)
            # Until the launcher says `P`, nothing runs: any failure is the server's.
            try:
                await loop.sock_sendall(mine, len(payload).to_bytes(4, "big") + payload)
                reader, writer = await asyncio.open_unix_connection(sock=mine)
            except OSError as exc:
                raise LaunchFailed(f"the launch server is gone: {exc}") from exc
            try:
                first = await reader.readline()
            except OSError as exc:
                writer.close()
                raise LaunchFailed(f"the launch server is gone: {exc}") from exc
            except BaseException:
                writer.close()
                raise
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            mine.close()
            raise
        if not first.startswith(b"P"):
            for fd in (out_r, err_r):
                os.close(fd)
            writer.close()
            why = first[1:].decode(errors="replace").strip() or "it ended without a word"
            raise LaunchFailed(f"the launch server refused the tool: {why}")
        stdout, t_out = await _pipe_reader(loop, out_r)
        stderr, t_err = await _pipe_reader(loop, err_r)
        launched = Launched(int(first[1:]), stdout, stderr, _transports=[t_out, t_err])
        launched.watch = asyncio.create_task(_watch(reader, writer, launched))
        return launched


async def _pipe_reader(
    loop: asyncio.AbstractEventLoop, fd: int
) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    reader = asyncio.StreamReader(limit=2**16, loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0)
    )
    return reader, transport


async def _watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, launched: Launched) -> None:
    """`S<status>` when the tool ended; the end of the socket without it means the launcher
    itself was killed (SIGKILL to the group), which the tool's group saw too."""
    try:
        line = await reader.readline()
        if line.startswith(b"S"):
            launched.returncode = os.waitstatus_to_exitcode(int(line[1:]))
        else:
            launched.returncode = -signal.SIGKILL
    except (OSError, ValueError):
        launched.returncode = -signal.SIGKILL
    finally:
        writer.close()
        launched.exited.set()


_shared = Launcher()


def shared() -> Launcher:
    """The worker process's launch server."""
    return _shared


def use(launcher: Launcher) -> Launcher:
    """Make `launcher` the worker process's (tests); returns the one it replaces."""
    global _shared
    old, _shared = _shared, launcher
    return old
