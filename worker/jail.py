"""The launcher that puts one tool process in the sandbox (see worker.sandbox for the why).

    python -I -S jail.py SPEC_JSON ARGV...

(worker/jail_server.py does the same for many tools from one process: worker.launcher.)

Standard library only, and never imported by the worker: it runs as its own small process
between the worker and the tool. SPEC is {"mode": "root" | "userns", "uid", "gid", "cwd",
"hide": [dirs], "expose": [dirs]}. Three processes, all in the worker's process group (so the worker's kill of
the group reaches them all):

    launcher   unshares a mount and a PID namespace (and, not root, a user namespace),
               then waits for the init and exits like the tool did
    init       PID 1 of the new namespace: mounts its own /proc, makes the working directory
               reachable for the tool's user, starts the tool, and on the tool's exit leaves,
               which makes the kernel kill whatever the tool left behind
    tool       drops to the sandbox user (root mode), sets no_new_privs, execs ARGV
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import stat
import struct
import sys

# Not `typing.TYPE_CHECKING`: the launcher does not import typing at all (it starts before
# every tool process); the checker treats any constant of this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal, NoReturn, NotRequired, TypedDict

    class Spec(TypedDict):
        """What the worker (worker.sandbox) tells the launcher, as JSON."""

        mode: Literal["root", "userns"]
        uid: int
        gid: int
        cwd: str
        hide: NotRequired[list[str]]
        expose: NotRequired[list[str]]


CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
# The new mount API has the same numbers on every architecture.
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_RECURSIVE, AT_EMPTY_PATH, AT_FDCWD = 1, 0x8000, 0x1000, -100
MOVE_MOUNT_F_EMPTY_PATH, MOUNT_ATTR_RDONLY, MOUNT_ATTR_IDMAP = 4, 0x1, 0x00100000
MNT_DETACH = 2
EXIT_SANDBOX = 125  # the sandbox could not be set up; stderr says why

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class SetupError(Exception):
    pass


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")
    return ret


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(_b(src), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)), f"mount {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _idmap_userns(uid_line: str, gid_line: str) -> int:
    """A user namespace holding only the mapping, for an idmapped mount; returns its fd."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _check(libc.unshare(CLONE_NEWUSER), "unshare(user)")
            os.write(ready_w, b"1")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    try:
        if os.read(ready_r, 1) != b"1":
            raise SetupError("could not create the user namespace of the idmapped mount")
        _write(f"/proc/{pid}/uid_map", uid_line)
        _write(f"/proc/{pid}/gid_map", gid_line)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.write(go_w, b"1")
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # the launch server ignores SIGCHLD: the kernel reaped it
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)


_USERNS: dict[tuple[int, int, int, int], int] = {}


def userns(idmap: tuple[int, int, int, int]) -> int:
    """The idmap user namespace's fd for (owner, group, uid, gid), made once per process:
    the launch server makes it before forking, so its warm launchers inherit it."""
    fd = _USERNS.get(idmap)
    if fd is None:
        if len(_USERNS) >= 16:  # a bound, not a policy: real workers see one or two owners
            for old in _USERNS.values():
                os.close(old)
            _USERNS.clear()
        owner, group, uid, gid = idmap
        fd = _USERNS[idmap] = _idmap_userns(f"{owner} {uid} 1", f"{group} {gid} 1")
    return fd


def has_userns(idmap: tuple[int, int, int, int]) -> bool:
    """Whether this process has (made or inherited) the idmap user namespace for `idmap`."""
    return idmap in _USERNS


def _searchable(path: str, uid: int, gid: int) -> bool:
    st = os.stat(path)
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _blocked_ancestor(path: str, uid: int, gid: int) -> str | None:
    """The first directory on the way to `path` that `uid` may not pass, if any."""
    parts = path.strip("/").split("/")[:-1]
    for i in range(len(parts) + 1):
        ancestor = "/" + "/".join(parts[:i])
        if not _searchable(ancestor, uid, gid):
            return ancestor
    return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _clone(path: str, idmap: tuple[int, int, int, int] | None, readonly: bool, at: int = AT_FDCWD) -> int:
    """A detached copy of the mount tree at `path` (relative to the directory `at` when
    given), idmapped and/or read-only."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE
    tree = _check(libc.syscall(SYS_OPEN_TREE, at, _b(path), flags), f"open_tree {path}")
    attr_set, ns = (MOUNT_ATTR_RDONLY if readonly else 0), 0
    if idmap:
        ns = userns(idmap)
        attr_set |= MOUNT_ATTR_IDMAP
    if attr_set:
        attr = struct.pack("QQQQ", attr_set, 0, 0, ns)
        what = f"idmapped mount of {path} (does its file system support it?)" if idmap else f"mount {path}"
        _check(
            libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH | AT_RECURSIVE, attr, len(attr)), what
        )
    return tree


def cwd_idmap(spec: Spec, ready: Premounted | None = None) -> tuple[int, int, int, int] | None:
    """(owner, group, uid, gid) when the working directory must be idmapped for the tool.
    With `ready` (its view's premounts, which may cover the directory) looked up through it."""
    if spec["mode"] != "root":
        return None
    st = ready.stat(spec["cwd"]) if ready is not None else os.stat(spec["cwd"])
    owner = (st.st_uid, st.st_gid)
    return (*owner, spec["uid"], spec["gid"]) if owner != (spec["uid"], spec["gid"]) else None


def prepare_view(spec: Spec) -> None:
    """Cover `hide` and the directories the tool's user may not pass with empty tmpfs, and
    put back at their own paths: the working directory (read-write; in root mode idmapped,
    so its owner's files are the sandbox user's while on disk they stay the owner's) and the
    `expose` directories (read-only: the worker's own Python, which commands may run)."""
    cwd, uid, gid, root = spec["cwd"], spec["uid"], spec["gid"], spec["mode"] == "root"
    hide = [h for h in spec.get("hide") or () if os.path.isdir(h) and not _inside(h, cwd)]
    idmap = cwd_idmap(spec)
    wanted = [(cwd, idmap, False)]
    wanted += [(e, None, True) for e in spec.get("expose") or () if os.path.isdir(e) and not _inside(e, cwd)]
    keep: list[tuple[str, int]] = []
    for path, mapping, readonly in wanted:
        if _cloned_back(path, mapping, hide, uid, gid, root):
            keep.append((path, _clone(path, mapping, readonly)))
    _cover(hide, uid, gid, [])
    for path, tree in sorted(keep, key=lambda k: len(k[0])):
        _put(tree, path)


def _cloned_back(
    path: str, idmap: tuple[int, int, int, int] | None, hide: list[str], uid: int, gid: int, root: bool
) -> bool:
    """Whether `path` must be cloned and put back (idmapped, or under a directory to cover);
    the first directory on its way that the tool's user may not pass joins `hide`."""
    blocked = _blocked_ancestor(path, uid, gid) if root else None
    if blocked:
        hide.append(blocked)
    return bool(idmap or blocked or any(_inside(path, h) for h in hide))


def _cover(hide: list[str], uid: int, gid: int, covered: list[str]) -> None:
    """An empty tmpfs over each of `hide` not inside another, shortest first; each mount
    point is added to `covered` as it is made (so a failure leaves it saying what to undo)."""
    for path in sorted(set(hide), key=len):
        if not any(_inside(path, c) for c in covered):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,uid={uid},gid={gid}")
            covered.append(path)


def _put(tree: int, path: str) -> None:
    """Mount the detached `tree` at `path` (made first if missing, e.g. on a tmpfs)."""
    os.makedirs(path, exist_ok=True)
    _check(libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, _b(path), MOVE_MOUNT_F_EMPTY_PATH), "move_mount")
    os.close(tree)


def view_plan(spec: Spec) -> dict[str, Any]:
    """What a tool's view depends on but its working directory's name: tools whose specs
    have the same plan (a worker's, in sibling workspaces) get the same mounts but that one."""
    return {
        "mode": spec["mode"],
        "uid": spec["uid"],
        "gid": spec["gid"],
        "hide": list(spec.get("hide") or ()),
        "expose": list(spec.get("expose") or ()),
        "parent": os.path.dirname(spec["cwd"]),
    }


class Premounted:
    """prepare_view's mounts for any working directory directly in `plan["parent"]`, made
    ahead of the request by a warm tool-to-be (worker/jail_server.py): the tmpfs over the
    hidden and the blocked directories, and the exposed directories cloned back read-only.
    `finish` adds the working directory itself (cloned through a descriptor of its parent
    opened before the tmpfs, as prepare_view clones it before covering); `undo` takes them
    all away again, for a request with another plan. The same mounts, in the same order, as
    prepare_view makes for that spec: split in two, not changed (tests/worker/test_launcher.py)."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.parent = -1  # O_PATH descriptor of plan["parent"], from before the tmpfs
        self.covered: list[str] = []  # tmpfs mount points, in the order mounted
        self.cwd_covered = False  # a working directory there is under a tmpfs: cloned back
        self.hidden: list[str] = []  # the `hide` directories that existed, so were covered

    def mount(self) -> None:
        """The mounts; raises SetupError (or OSError) for a plan prepare_view would treat
        otherwise (something hidden or exposed inside the parent) or a failed mount."""
        plan = self.plan
        parent, uid, gid, root = plan["parent"], plan["uid"], plan["gid"], plan["mode"] == "root"
        hide = [h for h in plan["hide"] if os.path.isdir(h)]
        self.hidden = list(hide)
        expose = [e for e in plan["expose"] if os.path.isdir(e)]
        if any(_inside(p, parent) and p != parent for p in (*hide, *expose)):
            raise SetupError("a hidden or exposed directory inside the workspaces' directory")
        self.parent = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        # Any working directory there, as prepare_view takes it first (not idmapped here:
        # `finish` clones it with the request's idmap when it is covered or needs one).
        self.cwd_covered = _cloned_back(os.path.join(parent, "_"), None, hide, uid, gid, root)
        keep: list[tuple[str, int]] = []
        try:
            for path in expose:
                if _cloned_back(path, None, hide, uid, gid, root):
                    keep.append((path, _clone(path, None, True)))
            _cover(hide, uid, gid, self.covered)
            while keep:
                path, tree = min(keep, key=lambda k: len(k[0]))
                keep.remove((path, tree))
                _put(tree, path)
        finally:
            for _, tree in keep:
                os.close(tree)

    def matches(self, spec: Spec) -> bool:
        """Whether `spec` is this plan's, and nothing it hides appeared since `mount`: a
        directory to hide made in between would have no tmpfs over it. (One that went away
        keeps an empty tmpfs: hidden either way. Exposed ones made since stay out of view:
        the safe side.)"""
        if self.parent < 0 or view_plan(spec) != self.plan:
            return False
        return [h for h in self.plan["hide"] if os.path.isdir(h)] == self.hidden

    def stat(self, cwd: str) -> os.stat_result:
        return os.stat(os.path.basename(cwd), dir_fd=self.parent)

    def finish(self, spec: Spec, idmap: tuple[int, int, int, int] | None) -> None:
        """The working directory of `spec` (which `matches`), as prepare_view mounts it."""
        if idmap or self.cwd_covered:
            cwd = spec["cwd"]
            _put(_clone(os.path.basename(cwd), idmap, False, at=self.parent), cwd)
        self.close()

    def undo(self) -> None:
        """Back to the view before `mount` (lazily: nothing runs in it yet)."""
        self.close()
        for path in reversed(self.covered):
            _check(libc.umount2(_b(path), MNT_DETACH), f"umount {path}")
        self.covered = []

    def close(self) -> None:
        if self.parent >= 0:
            os.close(self.parent)
            self.parent = -1


def tool(spec: Spec, argv: list[str], env: dict[str, str]) -> None:
    # Python ignores SIGPIPE and SIGXFSZ, the launch server SIGCHLD, and whoever started the
    # worker may have ignored others (nohup: SIGHUP): the tool starts with every standard
    # signal at its default. (32 and up belong to the C library and the real-time range.)
    for sig in range(1, 32):
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    try:
        if spec["mode"] == "root":
            os.setgroups([])
            os.setgid(spec["gid"])
            os.setuid(spec["uid"])
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        os.chdir(spec["cwd"])
        execvpe(argv, env)
    except (OSError, SetupError) as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr, flush=True)
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)


def execvpe(argv: list[str], env: dict[str, str]) -> NoReturn:
    """`os.execvpe`, searching `env`'s PATH the same way (the first executable file; EACCES
    reported only when nothing was found) but importing nothing: `os.execvpe` imports
    `warnings`, which the launch server (-I -S) has not loaded, so a tool-to-be read and
    compiled it as the sandbox user before every tool: ~1 ms of a 4 ms start."""
    program = argv[0]
    if "/" in program:
        os.execve(program, argv, env)
    denied: OSError | None = None
    for entry in env.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(entry, program)
        # access() first: a failed execve converts argv and env again on every entry.
        if not os.access(path, os.X_OK):
            if denied is None and os.access(path, os.F_OK):
                denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            continue
        try:
            os.execve(path, argv, env)
        except OSError as exc:  # a directory, a bad format ...: execvp goes on too
            denied = denied or exc
    raise denied or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def init(spec: Spec, argv: list[str], env: dict[str, str], report: int) -> None:
    """PID 1: the tool's status goes to the launcher through `report`."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the tool decides; we follow its end
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        prepare_view(spec)
    except (OSError, SetupError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr, flush=True)
        os._exit(EXIT_SANDBOX)
    child = os.fork()
    if child == 0:
        os.close(report)
        tool(spec, argv, env)
    while True:  # reap everything; the tool's end is ours
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            os.write(report, str(status).encode())
            os._exit(0)


def enter(mode: str) -> None:
    """Unshare the mount and PID namespaces (and the user namespace, `userns` mode): the
    next child is PID 1 of the new one."""
    if mode == "userns":
        uid, gid = os.getuid(), os.getgid()
        _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID), "unshare")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    else:
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks to the host


def run(spec: Spec, argv: list[str], env: dict[str, str]) -> int:
    """Run the tool in new namespaces; its wait status (EXIT_SANDBOX when setup failed)."""
    try:
        enter(spec["mode"])
    except (OSError, SetupError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr, flush=True)
        return EXIT_SANDBOX << 8
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        init(spec, argv, env, write_end)
    os.close(write_end)
    # The worker stops the group with SIGTERM: the tool gets it too; we wait for its end.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _, init_status = os.waitpid(pid, 0)
    reported = os.read(read_end, 64)
    os.close(read_end)
    if not reported:
        return init_status if os.WIFEXITED(init_status) else EXIT_SANDBOX << 8
    return int(reported)


def main() -> None:
    spec: Spec = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    worker = os.getppid()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a tool never outlives its worker
    if os.getppid() != worker:
        sys.exit(EXIT_SANDBOX)
    code = os.waitstatus_to_exitcode(run(spec, argv, dict(os.environ)))
    if code < 0:  # die of the same signal, so the worker sees what the tool saw
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
