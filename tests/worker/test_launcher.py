"""The launch server (worker.launcher, `jail.py --serve`): one pre-started process forks a
sandboxed launcher per tool, instead of a Python start per tool.

Run for real: the server, its launchers and the tools are real processes in real namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_for
from worker import launcher
from worker.process import GroupRun, run_in_group
from worker.sandbox import current

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_launcher() -> Iterator[launcher.Launcher]:
    """A launch server of the test's own, stopped at the end."""
    mine = launcher.Launcher()
    old = launcher.use(mine)
    try:
        yield mine
    finally:
        launcher.use(old)
        mine.stop()


async def run(argv: list[str], cwd: Path, path: str = os.defpath) -> tuple[GroupRun, str, str]:
    out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}

    async def pump(reader: asyncio.StreamReader, name: str) -> None:
        while line := await reader.readline():
            out[name].append(line)

    os.makedirs(cwd, exist_ok=True)
    done = await asyncio.wait_for(
        run_in_group(argv, cwd=cwd, env={"PATH": path}, pump=pump, cancelled=asyncio.Event()), 20
    )
    return done, b"".join(out["stdout"]).decode(), b"".join(out["stderr"]).decode()


@pytest.fixture(autouse=True)
def _sandboxed() -> None:
    if current().kind() is None:  # pragma: no cover (the suite runs sandboxed)
        pytest.fail("these tests need the sandbox (META_AGENT_SANDBOX is off)")


async def test_tools_start_through_one_server_and_a_new_one_after_it_died(
    own_launcher: launcher.Launcher, tmp_path: Path
) -> None:
    first, out, _ = await run(["sh", "-c", "echo $$"], tmp_path / "a")
    server = own_launcher.pid
    second, out2, _ = await run(["sh", "-c", "echo $$; exit 3"], tmp_path / "b")
    assert (first.returncode, second.returncode) == (0, 3)
    assert out.strip() == out2.strip() == "2"  # PID 2 of a new PID namespace: init is 1
    assert server is not None and own_launcher.pid == server  # the same server for both

    os.kill(server, signal.SIGKILL)
    wait_for(lambda: own_launcher.pid is None, 5, "the killed server to be gone")
    third, out3, _ = await run(["sh", "-c", "echo again"], tmp_path / "c")
    assert (third.returncode, out3.strip()) == (0, "again")
    assert own_launcher.pid not in (None, server)


async def test_a_server_that_cannot_start_leaves_the_tool_to_a_launcher_of_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = launcher.Launcher(script=tmp_path / "missing-jail.py")
    old = launcher.use(broken)
    try:
        done, out, _ = await run(["readlink", "/proc/self/ns/pid"], tmp_path / "ws")
    finally:
        launcher.use(old)
        broken.stop()
    assert done.returncode == 0
    assert out.strip() != os.readlink("/proc/self/ns/pid")  # still in a PID namespace of its own
    assert "starting the tool with its own launcher" in caplog.text


async def test_a_tool_gets_default_signal_handling_and_can_wait_for_its_children(
    own_launcher: launcher.Launcher, tmp_path: Path
) -> None:
    # The server ignores SIGCHLD (the kernel reaps its launchers); a tool inheriting that
    # would see `wait` fail, and one inheriting an ignored SIGTERM could not be stopped. The
    # worker itself may have been started with some ignored (nohup: SIGHUP), which its
    # launch server inherits, and Python's table reads at its start (jail.tool resets only
    # what is not at its default there).
    script = "sleep 0.05 & wait $!; echo waited=$?; grep -E '^Sig(Ign|Cgt)' /proc/self/status"
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the server starts on first use
    try:
        done, out, _ = await run(["sh", "-c", script], tmp_path)
    finally:
        signal.signal(signal.SIGHUP, before)
    assert done.returncode == 0
    assert "waited=0" in out
    ignored = next(line for line in out.splitlines() if line.startswith("SigIgn"))
    # Standard signals (1-31) only: above them the C library's own and the real-time range,
    # which a CI harness may leave ignored in every process it starts.
    assert int(ignored.split()[1], 16) & 0x7FFFFFFF == 0, out  # grep itself ignores nothing


async def test_a_tool_killed_by_a_signal_is_reported_so(
    own_launcher: launcher.Launcher, tmp_path: Path
) -> None:
    done, _, _ = await run(["sh", "-c", "kill -TERM $$"], tmp_path)
    assert done.returncode == -signal.SIGTERM


async def test_a_tool_that_cannot_start_says_why_on_its_stderr(
    own_launcher: launcher.Launcher, tmp_path: Path
) -> None:
    (tmp_path / "ws").mkdir()
    script = tmp_path / "ws" / "not-executable.sh"
    script.write_text("echo hi\n")
    done, _, err = await run(["./not-executable.sh"], tmp_path / "ws")
    assert done.returncode == 126
    assert "Permission denied" in err


async def test_a_program_is_found_on_path_as_execvp_finds_it(
    own_launcher: launcher.Launcher, tmp_path: Path
) -> None:
    # Entries that are missing, not a directory, a directory named like the program, or a
    # file that is not executable are passed over; the first executable file runs. (In the
    # working directory: the only one of the test's the sandbox user may see.)
    ws = tmp_path / "ws"
    bins = [ws / n for n in ("plain", "dir", "exec")]
    for b in bins:
        b.mkdir(parents=True)
    (bins[0] / "hello").write_text("echo plain\n")
    (bins[1] / "hello").mkdir()
    (bins[2] / "hello").write_text("#!/bin/sh\necho found\n")
    (bins[2] / "hello").chmod(0o755)
    path = ":".join([str(ws / "missing"), str(bins[0] / "hello"), *map(str, bins), os.defpath])
    done, out, err = await run(["hello"], ws, path)
    assert (done.returncode, out.strip()) == (0, "found"), err


@pytest.mark.parametrize(
    ("argv", "path", "expected"),
    [
        (["true"], os.defpath, "exec"),
        (["nothing-called-this"], os.defpath, "FileNotFoundError"),
        (["plain"], "{tmp}", "PermissionError"),  # found, but not executable: 126, not 127
    ],
)
def test_the_tool_to_be_execs_without_importing_anything(
    tmp_path: Path, argv: list[str], path: str, expected: str
) -> None:
    # A tool-to-be is a fork of the launch server (-I -S) running as the sandbox user: a
    # module imported on its way to exec is read and compiled for every tool (os.execvpe's
    # `warnings` cost ~1 ms of a 4 ms start).
    (tmp_path / "plain").write_text("echo plain\n")
    probe = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT / "worker")!r})
        import jail
        loaded = set(sys.modules)
        def execve(path, argv, env):
            if os.access(path, os.X_OK):
                print("exec", sorted(set(sys.modules) - loaded), flush=True)
                os._exit(0)
            raise FileNotFoundError(2, "No such file or directory", path)
        os.execve = execve
        spec = {{"mode": "userns", "uid": os.getuid(), "gid": os.getgid(), "cwd": {str(tmp_path)!r}}}
        try:
            jail.tool(spec, {argv!r}, {{"PATH": {path.format(tmp=tmp_path)!r}}})
        except BaseException as exc:
            print(type(exc).__name__, sorted(set(sys.modules) - loaded), flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30
    )
    if expected == "exec":
        assert done.stdout.split(maxsplit=1) == ["exec", "[]\n"], done.stdout + done.stderr
    else:
        # jail.tool reports the error on stderr and exits 127 / 126 itself
        assert done.returncode == (127 if expected == "FileNotFoundError" else 126), done.stdout + done.stderr
        assert done.stdout == "", done.stdout


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _server_with_a_warm_tool(own: launcher.Launcher) -> tuple[int, int]:
    """(the started server's pid, its waiting tool-to-be's), once it has one."""
    own.prestart()
    server = own.pid
    assert server is not None
    return server, wait_for(lambda: _warm_tool(server), 10, "a warm tool-to-be")


def _warm_tool(server: int) -> int | None:
    """The server's waiting tool-to-be: a child of a warm launcher's init (three levels)."""
    tools = _warm_tools(server)
    return tools[0] if tools else None


def _warm_tools(server: int) -> list[int]:
    """Every tool-to-be the server has waiting."""
    return [tool for pid in _children(server) for init in _children(pid) for tool in _children(init)]


async def test_a_tool_starts_with_one_hand_over_the_server_not_on_the_way(
    own_launcher: launcher.Launcher, tmp_path: Path
) -> None:
    # The tool's processes are forked before its request: the launcher in its namespaces,
    # their init and the tool-to-be, waiting. The worker hands the request straight to it,
    # so a tool starts even while the server itself cannot run.
    server, _ = _server_with_a_warm_tool(own_launcher)
    os.kill(server, signal.SIGSTOP)
    try:
        done, out, _ = await run(["sh", "-c", "echo $$"], tmp_path)
    finally:
        os.kill(server, signal.SIGCONT)
    assert (done.returncode, out.strip()) == (0, "2")


async def test_a_warm_set_killed_before_use_is_replaced(
    own_launcher: launcher.Launcher, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, tool = _server_with_a_warm_tool(own_launcher)
    os.killpg(os.getpgid(tool), signal.SIGKILL)  # its launcher's group: all three
    done, out, _ = await run(["sh", "-c", "echo $$"], tmp_path)
    assert (done.returncode, out.strip()) == (0, "2")
    assert own_launcher.pid == server
    assert "own launcher" not in caplog.text  # a fresh warm set, not the fallback


async def test_a_launch_cancelled_after_its_request_was_sent_takes_its_namespace_with_it(
    own_launcher: launcher.Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The request is on its way to a tool-to-be that has not said `P` yet (stopped here):
    # the caller is cancelled. Nobody would be left to stop the tool, so its launcher is
    # killed, and with it init and everything in the namespace.
    _, tool = _server_with_a_warm_tool(own_launcher)
    warm_launcher = os.getpgid(tool)  # the launcher leads its own group
    os.kill(tool, signal.SIGSTOP)
    sent = asyncio.Event()
    real_send_fds = launcher.socket.send_fds

    def send_fds(*args: Any, **kw: Any) -> Any:
        out = real_send_fds(*args, **kw)
        sent.set()
        return out

    monkeypatch.setattr(launcher.socket, "send_fds", send_fds)
    started = asyncio.create_task(run(["sh", "-c", "sleep 60"], tmp_path))
    await asyncio.wait_for(sent.wait(), 10)
    started.cancel()
    with pytest.raises(asyncio.CancelledError):
        await started

    def gone(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        return state == "Z"  # killed, not yet reaped by its parent

    wait_for(lambda: gone(warm_launcher) and gone(tool), 10, "the cancelled launch's processes to die")


async def test_tools_started_at_once_each_get_a_warm_set(
    own_launcher: launcher.Launcher, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # One warm set is kept ahead; the others are asked for (`N`) and forked on demand.
    runs = await asyncio.gather(*(run(["sh", "-c", "echo $$"], tmp_path / str(i)) for i in range(6)))
    assert [(done.returncode, out.strip()) for done, out, _ in runs] == [(0, "2")] * 6
    assert "own launcher" not in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="idmapped working directories are root mode's")
async def test_the_working_directorys_idmap_namespace_is_made_once_by_the_server(
    own_launcher: launcher.Launcher, tmp_path: Path
) -> None:
    def user_namespaces(pid: int) -> set[str]:
        # The server opens and closes descriptors while it launches (pidfds, pipes), so one
        # listed a moment ago may be gone when it is read: a closed one holds no namespace.
        links: set[str] = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(FileNotFoundError):
                links.add(os.readlink(fd))
        return {link for link in links if link.startswith("user:")}

    own_launcher.prestart()
    server = own_launcher.pid
    assert server is not None and not user_namespaces(server)
    first, _, _ = await run(["true"], tmp_path / "a")  # root's directory, nobody's tool: idmapped
    made = wait_for(lambda: user_namespaces(server), 10, "the server to make the idmap namespace")
    second, _, _ = await run(["true"], tmp_path / "b")
    assert (first.returncode, second.returncode) == (0, 0)
    assert user_namespaces(server) == made  # the same one, inherited by the next tools


WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from worker.launcher import shared
    from worker.process import run_in_group

    async def main():
        async def pump(reader, name):
            async for line in reader:
                print(name, line.decode().strip(), flush=True)
        os.environ["META_AGENT_API_KEY"] = "ma_not_for_the_server"
        run = asyncio.create_task(run_in_group(
            ["sh", "-c", "echo started; exec sleep 6061.5"], cwd=Path(sys.argv[1]),
            env={"PATH": os.defpath}, pump=pump, cancelled=asyncio.Event()))
        while shared().pid is None:
            await asyncio.sleep(0.01)
        print("server", shared().pid, flush=True)
        await run

    asyncio.run(main())
    """
)


def _sleepers() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"6061.5" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_server_holds_no_secret_and_its_tools_die_with_the_worker(tmp_path: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "META_AGENT_API_KEY": "ma_not_for_the_server"},
    )
    try:
        assert worker.stdout is not None
        lines = [worker.stdout.readline() for _ in range(2)]
        server = int(next(line for line in lines if line.startswith("server")).split()[1])
        assert any("started" in line for line in lines), lines
        environ = Path(f"/proc/{server}/environ").read_bytes().split(b"\0")
        assert [v for v in environ if v] == [f"PATH={os.defpath}".encode()]
        assert _sleepers(), "the tool should be running"
        worker.kill()
        worker.wait(10)
        wait_for(lambda: not Path(f"/proc/{server}").exists(), 10, "the server to exit with its worker")
        wait_for(lambda: not _sleepers(), 10, "the tool to die with its worker")
    finally:
        worker.kill()
        worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()


def _mountinfo(pid: str) -> str:
    return Path(f"/proc/{pid}/mountinfo").read_text()


def _mounts(mountinfo: str, names: dict[str, str]) -> list[tuple[str, ...]]:
    """A view's mounts as (root, mount point, options, type, super options), sorted (the
    order they were made in differs, never which is on top of which: prepare_view mounts a
    directory inside another after it); ids and device numbers left out (every tmpfs is a
    new device), the names in `names` replaced (the working directories' own)."""
    out = []
    for line in mountinfo.splitlines():
        left, right = line.split(" - ")
        fields = left.split()
        kind, _source, super_opts = right.split(" ", 2)
        row = (fields[3], fields[4], fields[5], kind, super_opts)
        for name, common in names.items():
            row = tuple(v.replace(name, common) for v in row)
        out.append(row)
    return sorted(out)


async def test_a_warm_set_premounts_the_last_tools_view_and_the_tool_sees_the_same(
    own_launcher: launcher.Launcher, tmp_path: Path
) -> None:
    """The mounts that do not depend on the working directory's own name are made while the
    next tool-to-be waits (jail.Premounted); a tool then sees exactly the view one that
    mounted everything itself sees, and so does a tool whose workspace is elsewhere (the
    premounts undone first), or in a directory made anew since they were made. Compared
    with a launcher of its own (`python jail.py`)."""
    show = ["cat", "/proc/self/mountinfo"]
    first, view_a, _ = await run(show, tmp_path / "ws" / "a")
    server = own_launcher.pid
    assert server is not None and first.returncode == 0

    # The warm sets forked after it have a tmpfs over the workspaces' blocked ancestor
    # already (the sandbox user may not pass pytest's 0700 directories), before any request.
    host = {m[1] for m in _mounts(_mountinfo("self"), {})}

    def premounted(tool: int) -> bool:
        mounts = _mounts(_mountinfo(str(tool)), {})
        return any(m[3] == "tmpfs" and m[1] not in host and str(tmp_path).startswith(m[1]) for m in mounts)

    def all_premounted() -> bool:
        # A set just used or replaced: gone (ENOENT), or exiting as its mountinfo is read (EINVAL).
        with contextlib.suppress(OSError):
            tools = _warm_tools(server)
            return bool(tools) and all(premounted(t) for t in tools)
        return False

    async def use_up_the_older_sets() -> None:
        """The sets forked before the last tool told its view wait without premounts."""
        for i in range(8):
            with contextlib.suppress(AssertionError):
                wait_for(all_premounted, 1, "every waiting tool-to-be premounted")
                return
            await run(["true"], tmp_path / "ws" / f"x{i}")
        raise AssertionError("no warm set premounted the view")

    await use_up_the_older_sets()
    # A set killed unused (it says nothing) is replaced by one premounting the same view.
    os.killpg(os.getpgid(_warm_tools(server)[0]), signal.SIGKILL)
    wait_for(lambda: len(_warm_tools(server)) == 2 and all_premounted(), 10, "its replacement premounted")
    second, view_b, _ = await run(show, tmp_path / "ws" / "b")
    elsewhere, view_c, _ = await run(show, tmp_path / "other" / "c")
    assert (second.returncode, elsewhere.returncode) == (0, 0)
    same = {"/ws/a": "/W", "/ws/b": "/W", "/other/c": "/W"}
    assert _mounts(view_b, same) == _mounts(view_a, same)

    # A workspaces' directory made anew after the premounts (their descriptor of it is of
    # the old one): the tool still gets its view, mounted from nothing.
    # The next sets premount for `other` once the older ones are used up.
    for i in range(3):
        await run(["true"], tmp_path / "other" / f"c{i + 2}")
    wait_for(all_premounted, 10, "every waiting tool-to-be premounted")
    shutil.rmtree(tmp_path / "other")
    anew, view_d, err = await run(show, tmp_path / "other" / "d")
    assert anew.returncode == 0, err
    same["/other/d"] = "/W"

    # The reference: each view as a launcher of its own mounts it, from nothing.
    for cwd, got in (("ws/b", view_b), ("other/c", view_c), ("other/d", view_d)):
        (tmp_path / cwd).mkdir(parents=True, exist_ok=True)
        argv = current().wrap(show, tmp_path / cwd, {"PATH": os.defpath})
        proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE)
        alone = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
        assert proc.returncode == 0
        assert _mounts(got, same) == _mounts(alone, same), cwd


async def test_two_warm_sets_wait_so_that_tools_one_after_the_other_never_wait_for_one(
    own_launcher: launcher.Launcher, tmp_path: Path
) -> None:
    """A set takes milliseconds from its fork to waiting for its request (forks, namespaces,
    premounts): the server keeps two ready (jail_server.WARM_AHEAD), and after a tool takes
    one, forks its replacement while the other is there for the next tool."""
    own_launcher.prestart()
    server = own_launcher.pid
    assert server is not None

    def two_waiting() -> bool:
        with contextlib.suppress(OSError):  # as in the test above: gone, or exiting
            return len(_warm_tools(server)) == 2
        return False

    wait_for(two_waiting, 10, "two warm tool-to-bes waiting")
    done, _, _ = await run(["true"], tmp_path / "a")
    assert done.returncode == 0
    wait_for(two_waiting, 10, "two warm tool-to-bes waiting again")
    assert own_launcher.pid == server
