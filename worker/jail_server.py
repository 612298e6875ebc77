"""The launch server: jail.py's sandbox for many tools, from one process (worker.launcher).

    python -I -S jail_server.py FD

Standard library only, like jail.py, and run the same way (never imported by the worker).
Starting a tool as its own `python jail.py` costs an interpreter start and, in root mode, a
user namespace for the idmapped working directory: 15-80 ms, most of a short command's
life. The worker starts this server once, and the server keeps the next two tools'
processes **warm**, forked ahead of time (WARM_AHEAD):

    launcher     its own session (the worker signals its group), PDEATHSIG on the server,
                 already in new mount and PID namespaces; reports the tool's end
    init         PID 1 of those namespaces, /proc already mounted; reaps until the tool ends
    tool-to-be   PID 2, waiting for the request; on it: the view (jail.prepare_view), then
                 jail.tool (the sandbox user, no_new_privs, exec)

Each warm set goes to the worker over FD (SOCK_SEQPACKET) as `W` + JSON {"pid", "mode"}
with two sockets: the tool-to-be's, on which the worker sends the tool's stdout and stderr
pipes and the request (a 4-byte length, then JSON {"spec", "argv", "env"}) and reads `P`
once it has them; and the launcher's, on which the worker reads `S<wait status>` when the
tool ended. So a tool's start is one hand-over, from the worker straight to the process
that becomes the tool: the server is not on the way, and never sees a tool's environment.

A tool-to-be that got its request tells the server so (it closes its end of a pipe, after
writing the idmap of its working directory if it had to make that user namespace itself):
the server then makes that user namespace once (jail.userns; the warm sets forked after
inherit it) and forks the next warm set, a little later, so that the fork does not compete
with the tool's own start. The worker asks for one at once (`N`) when it has none left.
The server exits when the worker's end of FD closes; warm sets and running tools die with
it (PDEATHSIG down the chain, then the PID namespace's end).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's dir out

import jail  # (found through the path above)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

MAX_REQUEST = 64 << 20
SETUP_FAILED = jail.EXIT_SANDBOX << 8  # a wait status: exited with EXIT_SANDBOX
# After a warm set is used, the next one is forked this much later (or at once when the
# worker asks): its three forks and namespaces would otherwise compete with the tool's start.
NEXT_WARM_DELAY = 0.005
# Warm sets kept waiting. A set takes ~5 ms from its fork to waiting for its request on a
# 2-core VM (three forks, the namespaces, /proc, the premounts): with one, a worker
# starting short tools one after the other met a set still on its way (~1.4 ms of a 5 ms
# start, stamped under issue #15); with two, the next is ready while its replacement forks.
WARM_AHEAD = 2


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            raise jail.SetupError("the peer closed the launch request early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _dup_stdio(out_fd: int, err_fd: int) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null, 0), (out_fd, 1), (err_fd, 2)):
        os.dup2(fd, target)
        os.close(fd)


def tool_to_be(
    chan: socket.socket, used: int, mode: str, error: str | None, plan: dict[str, Any] | None
) -> NoReturn:
    """PID 2, forked ahead of time: its request comes on `chan` (see the module's doc); its
    exit status is the tool's, EXIT_SANDBOX with the reason on the tool's stderr when the
    sandbox could not be set up. Closing `used` tells the server to fork the next one.

    With a `plan` (the last tool's view, jail.view_plan) the view's mounts that do not
    depend on the working directory's own name are made while waiting (jail.Premounted):
    a request with the same plan has only its working directory left to mount (~0.3 ms
    of a tool's start); any other request has them taken away first."""
    jail.libc.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    ready = _premount(plan) if plan is not None and error is None else None
    rehearse(ready)
    msg, fds, _, _ = socket.recv_fds(chan, 4, 2, socket.MSG_CMSG_CLOEXEC)
    if len(msg) != 4 or len(fds) != 2:
        os._exit(0)  # let go unused: nothing to report
    _dup_stdio(*fds)
    try:
        size = int.from_bytes(msg, "big")
        if size > MAX_REQUEST:
            raise jail.SetupError(f"a launch request of {size} bytes")
        payload = recv_exactly(chan, size)
        chan.sendall(b"P")
        request = json.loads(payload)
        spec, argv, env = request["spec"], list(request["argv"]), dict(request["env"])
        if error:
            raise jail.SetupError(error)
        if spec["mode"] != mode:  # the namespaces were made for `mode`: never run another way
            raise jail.SetupError(f"a {spec['mode']} tool in a {mode} sandbox")
        _view(spec, ready, used)
    except (OSError, ValueError, KeyError, TypeError, jail.SetupError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr, flush=True)
        os._exit(jail.EXIT_SANDBOX)
    chan.close()
    jail.tool(spec, argv, env)
    os._exit(127)  # not reached: jail.tool execs or exits


# A request's shape, for `rehearse`: what is in it does not matter, its parsing does.
_SAMPLE = json.dumps(
    {
        "spec": {"mode": "root", "uid": 1, "gid": 1, "cwd": "/w/t", "hide": ["/h"], "expose": ["/e"]},
        "argv": ["tool", "--flag", "value"],
        "env": {"PATH": "/usr/bin:/bin", "HOME": "/h", "TASK_ID": "t" * 26, "TASK_PROMPT": "p" * 64},
    }
).encode()


def rehearse(ready: jail.Premounted | None) -> None:
    """Run the request's Python once on a sample, before the request: a forked process
    copies each page of its parent's memory that it first writes to (Python writes a
    reference count wherever it reads an object), and the first parse of a request, the
    view's plan and the word to the server took ~0.36 ms of a tool's start that way on a
    2-core VM, ~0.14 ms once rehearsed (stamped under #15). Nothing is mounted, written or
    sent; a rehearsal that fails is no reason to fail the tool."""
    try:
        spec = json.loads(_SAMPLE)["spec"]
        if ready is not None:
            plan = ready.plan
            spec.update((k, plan[k]) for k in ("mode", "uid", "gid", "hide", "expose"))
            spec["cwd"] = os.path.join(plan["parent"], "_")
            ready.matches(spec)  # its view_plan, and the hidden directories looked at
        json.dumps({"plan": jail.view_plan(spec), "idmap": (0, 0, 1, 1)}).encode()
    except Exception:  # see the docstring
        pass


def _view(spec: jail.Spec, ready: jail.Premounted | None, used: int) -> None:
    """Mount the tool's view: its working directory on `ready`'s premounts when they are
    the view's (and still fit: its parent directory may have been made anew since), else
    all of it, from nothing. Tells the server the idmap's user namespace (made there once,
    inherited by the next sets) if this one had to make it, and the plan to premount."""
    if ready is not None and not ready.matches(spec):
        ready.undo()
        ready = None
    try:
        idmap = jail.cwd_idmap(spec, ready)
    except OSError:
        if ready is None:
            raise
        ready.undo()
        ready = None
        idmap = jail.cwd_idmap(spec)
    said: dict[str, Any] = {"plan": jail.view_plan(spec)}
    if idmap and not jail.has_userns(idmap):
        said["idmap"] = idmap
    os.write(used, json.dumps(said).encode())
    os.close(used)
    if ready is not None:
        try:
            ready.finish(spec, idmap)
            return
        except (OSError, jail.SetupError):  # nothing of the working directory was mounted
            ready.undo()
    jail.prepare_view(spec)


def _premount(plan: dict[str, Any]) -> jail.Premounted | None:
    """`plan`'s mounts, made now; None when they could not be (the request then mounts its
    whole view itself). A set whose mounts failed and could not be undone exits: it is
    replaced, and never runs a tool in a view half made."""
    ready = jail.Premounted(plan)
    try:
        ready.mount()
    except (OSError, ValueError, KeyError, TypeError, jail.SetupError):
        try:
            ready.undo()
        except (OSError, jail.SetupError):
            os._exit(0)
        return None
    return ready


def init(
    chan: socket.socket, used: int, report: int, mode: str, error: str | None, plan: dict[str, Any] | None
) -> NoReturn:
    """PID 1 of the launcher's namespaces (a plain child when entering them failed: `error`
    says why, and the tool-to-be reports it). Forks the tool-to-be and reaps until it ends;
    its wait status goes to the launcher on `report`."""
    jail.libc.prctl(jail.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the tool decides; we follow its end
    if error is None:
        try:
            jail.mount("proc", "/proc", "proc", jail.MS_NOSUID | jail.MS_NODEV | jail.MS_NOEXEC)
        except (OSError, jail.SetupError) as exc:
            error = str(exc)
    child = os.fork()
    if child == 0:
        os.close(report)
        tool_to_be(chan, used, mode, error, plan)
    chan.close()
    os.close(used)
    while True:  # reap everything; the tool's end is ours
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            os.write(report, str(status).encode())
            os._exit(0)


def launcher(
    server: int, conn: socket.socket, chan: socket.socket, used: int, mode: str, plan: dict[str, Any] | None
) -> NoReturn:
    """A warm launcher (see the module's doc): `conn` is its line to the worker, `chan` and
    `used` go down to the tool-to-be."""
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
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        conn.close()
        init(chan, used, report_w, mode, setup_error, plan)
    os.close(report_w)
    os.close(used)
    chan.close()
    # The worker stops the group with SIGTERM: the tool gets it; we wait for its end.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _, init_status = os.waitpid(pid, 0)
    reported = os.read(report_r, 64)
    status = int(reported) if reported else init_status if os.WIFEXITED(init_status) else SETUP_FAILED
    try:
        conn.sendall(b"S%d\n" % status)
    except OSError:
        pass  # the worker let this one go unused, or is gone
    os._exit(0)


class Server:
    """Keeps WARM_AHEAD warm sets with the worker: forked from the start, a new one when
    one is used (a little later) or when the worker asks (`N`)."""

    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.pid = os.getpid()
        # The sandbox.Sandbox kind for this user, which the worker's specs carry.
        self.mode = "root" if os.geteuid() == 0 else "userns"
        self.poller = select.poll()
        self.poller.register(ctl, select.POLLIN)
        self.unused: dict[int, bytes] = {}  # each warm set's `used` pipe: what it wrote so far
        self.due: float | None = None  # when to fork the next warm set
        self.plan: dict[str, Any] | None = None  # the last tool's view: what warm sets premount

    def fork_warm(self) -> None:
        self.due = None
        conn, conn_theirs = socket.socketpair()
        chan, chan_theirs = socket.socketpair()
        used_r, used_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            self.ctl.close()
            conn.close()
            chan.close()
            for fd in (used_r, *self.unused):
                os.close(fd)
            launcher(self.pid, conn_theirs, chan_theirs, used_w, self.mode, self.plan)
        conn_theirs.close()
        chan_theirs.close()
        os.close(used_w)
        try:
            head = json.dumps({"pid": pid, "mode": self.mode}).encode()
            socket.send_fds(self.ctl, [b"W" + head], [chan.fileno(), conn.fileno()])
        except OSError:
            os._exit(0)  # the worker is gone
        finally:
            chan.close()
            conn.close()
        self.unused[used_r] = b""
        self.poller.register(used_r, select.POLLIN)
        self._plan_next()

    def _plan_next(self) -> None:
        if len(self.unused) < WARM_AHEAD and self.due is None:
            self.due = time.monotonic() + NEXT_WARM_DELAY

    def used(self, fd: int) -> None:
        """The warm set of `fd` got its request (or died): learn its idmap, plan the next."""
        data = os.read(fd, 4096)
        if data:
            self.unused[fd] += data
            return
        self.poller.unregister(fd)
        os.close(fd)
        said = self.unused.pop(fd)
        try:
            told: dict[str, Any] = json.loads(said) if said else {}
            plan: Any = told.get("plan")
            if isinstance(plan, dict):  # a set let go unused, or killed, says nothing
                self.plan = plan
            idmap: list[Any] | None = told.get("idmap")
            if idmap:
                owner, group, uid, gid = (int(v) for v in idmap)
                jail.userns((owner, group, uid, gid))  # made once here, inherited by the next ones
        except (OSError, ValueError, TypeError, AttributeError, jail.SetupError):
            pass  # the tools make it themselves (slower), as this one did
        self._plan_next()

    def serve(self) -> NoReturn:
        self.fork_warm()  # ready before the first request
        while True:
            wait = None if self.due is None else max(0, round((self.due - time.monotonic()) * 1000))
            for fd, _ in self.poller.poll(wait):
                if fd != self.ctl.fileno():
                    self.used(fd)
                    continue
                try:
                    msg = self.ctl.recv(16)
                except OSError:  # reset: it left warm sets unread
                    msg = b""
                if not msg:
                    os._exit(0)  # the worker is gone
                if msg == b"N":
                    self.fork_warm()
            if self.due is not None and time.monotonic() >= self.due:
                self.fork_warm()


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
