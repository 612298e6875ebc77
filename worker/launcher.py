"""The worker's side of the launch server (worker/jail_server.py).

Starting a sandboxed tool as its own `python jail.py` costs an interpreter start and a user
namespace per tool (15-80 ms). The launch server is started once per worker process and
keeps the next tools' processes forked ahead of time, in their namespaces already: warm sets
(two waiting), which it sends here. `Launcher.start` takes one, hands its tool-to-be the tool's pipes
and the request (sandbox spec, argv, environment), and returns a `Launched`: the process
group to signal, the two pipes to read, and an event set when the tool ended.

The server holds no secret: it starts with an environment of PATH only and never sees a
request; the tool-to-be, which execs the tool, does. It dies with the worker (it exits
when the worker's end of its socket closes), and the warm sets and tools with it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LaunchFailed", "Launched", "Launcher", "shared", "use"]

log = logging.getLogger(__name__)

SERVER = Path(__file__).with_name("jail_server.py")
# How long to wait for the server to fork a warm set when none is waiting (it takes
# milliseconds; a server that sends none in this long is treated as broken).
TAKE_WAIT = 5.0


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
        """The socket to the server, started first if it is not running; under the lock."""
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
        with self._lock:
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

    def _take(self, wait: float) -> _Warm | None:
        """The next warm set the server sent, waiting up to `wait` seconds for one; None if
        none came. A server found dead before is started again (it sends one at start)."""
        with self._lock:
            ctl = self._control()
        # Not under the lock: a launch that finds a warm set waiting must not wait here. (poll,
        # not select: the embedded worker's process may hold more than 1024 descriptors.)
        poller = select.poll()
        try:
            poller.register(ctl, select.POLLIN)
            if not poller.poll(wait * 1000):
                return None
        except (OSError, ValueError):  # closed meanwhile (stop, or a restart by another launch)
            return None
        with self._lock:
            if ctl is not self._ctl:
                return None
            try:
                msg, fds, _, _ = socket.recv_fds(ctl, 256, 2, socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return None
            except OSError as exc:
                msg, fds = b"", []
                log.warning("the launch server's socket failed: %s", exc)
            if not msg:  # the server died (the next launch starts another)
                self._restart()
                raise LaunchFailed("the launch server is gone")
            chan, conn = (socket.socket(fileno=fd) for fd in fds) if len(fds) == 2 else (None, None)
            try:
                head = json.loads(msg[1:])
                pid, mode = int(head["pid"]), str(head["mode"])
            except (ValueError, KeyError, TypeError):
                pid, mode = 0, ""
            if chan is None or conn is None or not msg.startswith(b"W") or not pid:
                for fd in fds if chan is None else ():
                    os.close(fd)
                for sock in (chan, conn):
                    if sock is not None:
                        sock.close()
                return None
            return _Warm(pid, mode, chan, conn)

    def _ask(self) -> None:
        """None left: ask the server for a warm set now."""
        with self._lock:
            try:
                self._control().send(b"N")
            except OSError:
                self._restart()

    def _restart(self) -> None:
        """Under the lock: the server is gone or unusable; the next `_control` starts another."""
        if self._server is not None and self._server.poll() is None:
            self._server.kill()
            self._server.wait(5)
        self._server = None

    async def _next(self) -> _Warm:
        """A warm set: the one waiting, or the next the server forks (asked for now)."""
        warm = self._take(0)
        deadline = time.monotonic() + TAKE_WAIT
        while warm is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LaunchFailed("the launch server sent no warm launcher")
            self._ask()
            warm = await asyncio.to_thread(self._take, left)
        return warm

    async def start(self, spec: Mapping[str, Any], argv: Sequence[str], env: Mapping[str, str]) -> Launched:
        """Start `argv` in the sandbox `spec` with `env`; raises LaunchFailed if it did not start."""
        payload = json.dumps({"spec": dict(spec), "argv": list(argv), "env": dict(env)}).encode()
        for attempt in (1, 2):
            try:
                warm = await self._next()
            except OSError as exc:
                raise LaunchFailed(f"the launch server did not start: {exc}") from exc
            if warm.mode != spec.get("mode"):
                warm.close()
                raise LaunchFailed(f"the launch server's sandbox is {warm.mode}, not {spec.get('mode')}")
            try:
                return await self._hand_over(warm, payload)
            except LaunchFailed:
                # A warm set killed from outside, or one the server sent before it died: the
                # next is fresh. Twice is something else.
                if attempt == 2:
                    raise
        raise AssertionError("not reached")

    async def _hand_over(self, warm: _Warm, payload: bytes) -> Launched:
        """Send the request to `warm`'s tool-to-be; its launcher reports the end on `conn`."""
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        chan = warm.chan
        sent = False
        try:
            try:
                chan.setblocking(False)
                socket.send_fds(chan, [len(payload).to_bytes(4, "big")], [out_w, err_w])
                sent = True
            finally:
                for fd in (out_w, err_w):
                    os.close(fd)
            # Until the tool-to-be says `P`, nothing runs: any failure is the server's.
            await loop.sock_sendall(chan, payload)
            if await loop.sock_recv(chan, 1) != b"P":
                raise LaunchFailed("the warm launcher ended without a word")
            reader, writer = await asyncio.open_unix_connection(sock=warm.conn)
        except BaseException as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            warm.close()
            if isinstance(exc, OSError) and not isinstance(exc, LaunchFailed):
                raise LaunchFailed(f"the warm launcher is gone: {exc}") from exc
            if sent and not isinstance(exc, LaunchFailed):
                # Cancelled with the request on its way: the tool may start with nobody to
                # stop it. Its launcher's end takes init, so the whole namespace, with it.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(warm.pid, signal.SIGKILL)
            raise
        finally:
            chan.close()  # the tool-to-be has everything; it closes its end as it execs
        stdout, t_out = await _pipe_reader(loop, out_r)
        stderr, t_err = await _pipe_reader(loop, err_r)
        launched = Launched(warm.pid, stdout, stderr, _transports=[t_out, t_err])
        launched.watch = asyncio.create_task(_watch(reader, writer, launched))
        return launched


@dataclass
class _Warm:
    """A warm set from the server: its launcher's pid (the tool's process group), the
    sandbox mode of its namespaces, the line to its tool-to-be and the one to its launcher."""

    pid: int
    mode: str
    chan: socket.socket
    conn: socket.socket

    def close(self) -> None:
        """Let it go: the tool-to-be exits at the end of its line, the rest after it."""
        self.chan.close()
        self.conn.close()


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
