"""The launch server: jail.py's sandbox for many tools, from one process (worker.launcher).

    python -I -S jail_server.py FD

Standard library only, like jail.py, and run the same way (never imported by the worker).
Starting a tool as its own `python jail.py` costs an interpreter start and, in root mode, a
user namespace for the idmapped working directory: 15-80 ms, most of a short command's
life. The worker starts this server once; per tool it sends, over FD (SOCK_SEQPACKET), the
tool's stdout and stderr pipes and a socket on which it writes the request (a 4-byte length,
then JSON {"spec", "argv", "env"}) and reads `P<pid>` when the tool's launcher has it and
`S<wait status>` when the tool ended (or `E<why>` when the request was refused).

What makes it fast is that the work that does not depend on the request is done before it
arrives. The server keeps one launcher **warm**, forked ahead of time:

    launcher   its own session (the worker signals its group), PDEATHSIG on the server,
               already in new mount and PID namespaces; on a request it reports `P`,
               hands the request and pipes to its init, and waits for the end
    init       PID 1 of those namespaces, /proc already mounted; on the request it makes
               the view (jail.prepare_view), forks the tool and reaps until it ends
    tool       jail.tool: the sandbox user, no_new_privs, exec

After handing a request over, the server forks the next warm launcher. It also keeps the
idmap user namespaces it made (jail._userns), which the launchers forked after inherit.
It exits when the worker's end of FD closes; warm launchers and running tools die with it
(PDEATHSIG down the chain, then the PID namespace's end).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's dir out

import jail  # (found through the path above)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

MAX_REQUEST = 64 << 20
SETUP_FAILED = jail.EXIT_SANDBOX << 8  # a wait status: exited with EXIT_SANDBOX


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            raise jail.SetupError("the peer closed the launch request early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_request(conn: socket.socket) -> bytes:
    """The worker's request: a 4-byte big-endian length, then that much JSON."""
    conn.settimeout(10)  # a worker that stalls mid-request must not stall every launch
    size = int.from_bytes(recv_exactly(conn, 4), "big")
    if size > MAX_REQUEST:
        raise jail.SetupError(f"a launch request of {size} bytes")
    payload = recv_exactly(conn, size)
    conn.settimeout(None)
    return payload


def _dup_stdio(out_fd: int, err_fd: int) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null, 0), (out_fd, 1), (err_fd, 2)):
        os.dup2(fd, target)
        os.close(fd)


def init(chan: socket.socket, proc_error: str | None) -> NoReturn:
    """PID 1, waiting for its request on `chan` (the tool's pipes, then the payload); the
    tool's wait status goes back on `chan`."""
    msg, fds, _, _ = socket.recv_fds(chan, 4, 2, socket.MSG_CMSG_CLOEXEC)
    if len(msg) != 4 or len(fds) != 2:
        os._exit(0)  # discarded before use: nothing to report
    _dup_stdio(*fds)
    status = SETUP_FAILED
    try:
        request = json.loads(recv_exactly(chan, int.from_bytes(msg, "big")))
        spec, argv, env = request["spec"], list(request["argv"]), dict(request["env"])
        if proc_error:
            raise jail.SetupError(proc_error)
        jail.prepare_view(spec)
    except (OSError, ValueError, KeyError, TypeError, jail.SetupError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr, flush=True)
        chan.sendall(str(status).encode())
        os._exit(0)
    child = os.fork()
    if child == 0:
        chan.close()
        jail.tool(spec, argv, env)
    while True:  # reap everything; the tool's end is ours
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            chan.sendall(str(status).encode())
            os._exit(0)


def launcher(server: int, chan: socket.socket, mode: str) -> NoReturn:
    """A warm launcher (see the module's doc). `chan` is its line to the server."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server's SIG_IGN would reap init for us
    os.setsid()
    jail.libc.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != server:
        os._exit(0)
    setup_error: str | None = None
    try:
        jail.enter(mode)
    except (OSError, jail.SetupError) as exc:
        setup_error = str(exc)
    to_init, theirs = socket.socketpair()
    pid = 0
    if setup_error is None and (pid := os.fork()) == 0:
        to_init.close()
        chan.close()
        jail.libc.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the tool decides; we follow its end
        proc_error = None
        try:
            jail.mount("proc", "/proc", "proc", jail.MS_NOSUID | jail.MS_NODEV | jail.MS_NOEXEC)
        except (OSError, jail.SetupError) as exc:
            proc_error = str(exc)
        init(theirs, proc_error)
    theirs.close()
    # Warm until the request: its length, with the pipes and the worker's socket.
    msg, fds, _, _ = socket.recv_fds(chan, 4, 3, socket.MSG_CMSG_CLOEXEC)
    if len(msg) != 4 or len(fds) != 3:
        os._exit(0)  # the server let us go; init follows (PDEATHSIG)
    out_fd, err_fd, conn_fd = fds
    conn = socket.socket(fileno=conn_fd)
    status = SETUP_FAILED
    try:
        payload = recv_exactly(chan, int.from_bytes(msg, "big"))
        conn.sendall(b"P%d\n" % os.getpid())
        if setup_error is not None:
            os.write(err_fd, f"sandbox: {setup_error}\n".encode())
        else:
            # The worker stops the group with SIGTERM: the tool gets it; we wait for its end.
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            socket.send_fds(to_init, [len(payload).to_bytes(4, "big")], [out_fd, err_fd])
            to_init.sendall(payload)
            _, init_status = os.waitpid(pid, 0)
            reported = to_init.recv(64)
            status = int(reported) if reported else init_status if os.WIFEXITED(init_status) else SETUP_FAILED
    except (OSError, ValueError) as exc:
        os.write(err_fd, f"sandbox: {exc}\n".encode())
    try:
        conn.sendall(b"S%d\n" % status)
    finally:
        os._exit(0)


class Server:
    """The loop: requests in on `ctl`, each handed to the warm launcher, a new one forked."""

    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.pid = os.getpid()
        self.warm: tuple[str, socket.socket] | None = None  # (mode, its channel)

    def fork_warm(self, mode: str) -> None:
        if self.warm is not None:
            self.warm[1].close()  # let the old one go (it exits on the end of its channel)
        mine, theirs = socket.socketpair()
        if os.fork() == 0:
            mine.close()
            self.ctl.close()
            launcher(self.pid, theirs, mode)
        theirs.close()
        self.warm = (mode, mine)

    def hand_over(self, mode: str, payload: bytes, fds: list[int]) -> None:
        for attempt in (1, 2):
            if self.warm is None or self.warm[0] != mode:
                self.fork_warm(mode)
            assert self.warm is not None
            chan = self.warm[1]
            try:
                socket.send_fds(chan, [len(payload).to_bytes(4, "big")], fds)
                chan.sendall(payload)
            except OSError:  # the warm one died (killed from outside): a fresh one, once
                if attempt == 2:
                    raise
                self.warm = None
                continue
            chan.close()
            self.warm = None
            return

    def serve(self) -> NoReturn:
        while True:
            msg, fds, _, _ = socket.recv_fds(self.ctl, 16, 3, socket.MSG_CMSG_CLOEXEC)
            if not msg:
                os._exit(0)  # the worker is gone
            if len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                continue
            conn = socket.socket(fileno=fds[2])
            mode: str | None = None
            try:
                payload = read_request(conn)
                spec = json.loads(payload)["spec"]
                mode = str(spec["mode"])
                idmap = jail.cwd_idmap(spec)
                if idmap:
                    jail.userns(idmap)  # made once here, inherited by the launchers forked after
                self.hand_over(mode, payload, fds)
            except (OSError, ValueError, KeyError, TypeError, jail.SetupError) as exc:
                try:
                    conn.sendall(b"E%s\n" % str(exc).encode()[:500])
                except OSError:
                    pass
            finally:
                os.close(fds[0])
                os.close(fds[1])
                conn.close()
            if mode is not None and self.warm is None:
                self.fork_warm(mode)  # the next one, ready before the next request


def main() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the worker's end closing stops us
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # launchers are reaped by the kernel
    # Every launcher is a fork of this process: a collection in one would write to every
    # object's page and copy them all; without it a launcher copies only what it touches.
    gc.disable()
    gc.freeze()
    Server(socket.socket(fileno=int(sys.argv[1]))).serve()


if __name__ == "__main__":
    main()
