"""No process an agent starts (a `command` task, a `bash` tool call) can get the worker's key:
not from its environment, an ancestor's environ or cmdline, `ps`, or the worker's key file.

The worker is a real process holding a key in its environment, on its command line and in
its config file; the probe runs for real in the sandbox (worker.sandbox). As root (CI) the
tools run as `nobody`; the non-root path runs the same worker as `nobody` itself."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.worker.helpers import make_ctx
from worker import sandbox
from worker.runtime import TaskFailed
from worker.runtimes.command import CommandRuntime

ROOT = Path(__file__).resolve().parents[2]
PROBE = r"""
echo "== env"; env
echo "== ancestors"
pid=$$
while [ -n "$pid" ] && [ "$pid" != 0 ]; do
  cat /proc/$pid/environ /proc/$pid/cmdline 2>&1 | tr '\0' '\n'
  pid=$(awk '/^PPid:/ {print $2}' /proc/$pid/status 2>/dev/null)
done
echo "== parent"; cat /proc/$PPID/environ 2>&1 | tr '\0' '\n'
echo "== every process"
for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null | tr '\0' '\n'; done
echo "== ps"; ps eww ax 2>&1
echo "== files"; cat KEYFILE "$HOME/.config/meta-agent/config.toml" 2>&1
echo PROBE-DONE
"""


def run_worker(python: str, base: Path, *, as_nobody: bool) -> dict[str, str]:
    key = "ma_" + secrets.token_hex(16)
    home = base / "home"
    keyfile = home / ".config" / "meta-agent" / "config.toml"
    keyfile.parent.mkdir(parents=True)
    keyfile.write_text(f'url = "http://127.0.0.1:8000"\napi_key = "{key}"\n')
    keyfile.chmod(0o600)
    (base / "ws").mkdir()
    if as_nobody:
        for path in [base, *base.rglob("*")]:
            os.chown(path, 65534, 65534)
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "META_AGENT_API_KEY": key,
        "META_AGENT_DATABASE_URL": f"postgresql://meta:{key}@db/meta",
        "PYTHONPATH": f"{ROOT}:{site}",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
    probe = PROBE.replace("KEYFILE", str(keyfile))
    argv = [*prefix, python, str(ROOT / "tests/worker/sandbox_probe.py"), str(base / "ws"), probe]
    done = subprocess.run(
        [*argv, f"--api-key={key}"], env=env, cwd=base, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, str] = json.loads(done.stdout)
    for name, text in seen.items():
        assert "PROBE-DONE" in text, f"the probe did not run as {name}: {text[-2000:]}"
        leaks = [line for line in text.splitlines() if key in line]
        assert not leaks, f"the {name} process read the worker's key: {leaks}"
    return seen


def test_the_worker_key_is_out_of_reach_of_commands_and_bash(tmp_path: Path) -> None:
    seen = run_worker(sys.executable, tmp_path, as_nobody=False)
    if os.geteuid() == 0:  # the tools ran as the sandbox user, not as root
        assert "/.config/meta-agent/config.toml: Permission denied" in seen["command"] or (
            "No such file or directory" in seen["command"]
        )


# It must also be able to start itself again (the sandbox's launcher runs on it).
SELF_START = (
    "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', 'import json']).returncode)"
)


def _python_for_nobody() -> str | None:
    for candidate in (os.path.realpath(sys.executable), shutil.which("python3", path="/usr/bin:/bin")):
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if (
            candidate
            and subprocess.run([*nobody, candidate, "-c", SELF_START], capture_output=True).returncode == 0
        ):
            return candidate
    return None


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="sandbox-nobody-"))  # under /tmp: nobody can reach it
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _unable(why: str) -> None:
    # CI must run the non-root path, never skip it silently.
    if os.environ.get("CI"):
        pytest.fail(why + " (CI requires it)")
    pytest.skip(why)


def test_a_worker_that_is_not_root_keeps_its_key_too(nobody_dir: Path) -> None:
    if os.geteuid() != 0:
        run_worker(sys.executable, nobody_dir, as_nobody=False)  # we are the unprivileged worker
        return
    if shutil.which("setpriv") is None:
        _unable("setpriv (util-linux) is needed to run a worker as nobody")
    python = _python_for_nobody()
    if python is None:
        _unable("no Python interpreter on this machine that the user nobody may run")
    run_worker(python, nobody_dir, as_nobody=True)


async def test_no_sandbox_means_no_tool_process_unless_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    marker = tmp_path / "ran"
    # A sandbox that cannot be had: as root, a sandbox user that does not exist; otherwise
    # a platform without namespaces.
    broken = sandbox.Sandbox(user="no-such-user-here")
    if os.geteuid() != 0:
        monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(sandbox, "_current", broken)
    ctx, _ = make_ctx(tmp_path / "ws", ["touch", str(marker)])
    with pytest.raises(TaskFailed) as failed:
        await CommandRuntime().run(ctx)
    assert failed.value.code == "sandbox_unavailable" and "META_AGENT_SANDBOX=off" in failed.value.message
    assert not marker.exists()

    monkeypatch.setattr(sandbox, "_current", sandbox.Sandbox("off"))
    ctx, _ = make_ctx(tmp_path / "ws", ["touch", str(marker)])
    await CommandRuntime().run(ctx)
    assert marker.exists()  # with the worker's own rights, as the operator asked


def test_the_sandbox_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="META_AGENT_SANDBOX"):
        sandbox.Sandbox("maybe")


def test_a_process_running_a_worker_is_not_dumpable() -> None:
    code = (
        "import ctypes; from worker.sandbox import Sandbox, configure; configure(Sandbox('off')); "
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"  # PR_GET_DUMPABLE
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "0", done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox user is root mode's")
def test_the_sandbox_user_is_looked_up_once_not_per_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before each tool's start: a user database lookup and two realpaths were ~70 µs of the
    # worker's ~200 µs from the runtime to the launch.
    looked_up: list[str] = []
    real = pwd.getpwnam

    def getpwnam(name: str) -> pwd.struct_passwd:
        looked_up.append(name)
        return real(name)

    monkeypatch.setattr(sandbox.pwd, "getpwnam", getpwnam)
    box = sandbox.Sandbox(user="nobody")
    specs = [box.spec(["true"], tmp_path, {"PATH": os.defpath}) for _ in range(3)]
    assert looked_up == ["nobody"]
    assert specs[0] == specs[2] and specs[0] is not None and specs[0]["uid"] == real("nobody").pw_uid


def test_a_program_found_on_path_is_remembered_and_checked_again_not_searched_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `which` tries every PATH entry (16 on a pyenv box, ~40 µs a tool): found once, the
    # program's place is checked again; gone from there, it is searched for, and missing.
    searched: list[str] = []
    real = shutil.which

    def which(cmd: str, mode: int = os.F_OK | os.X_OK, path: str | None = None) -> str | None:
        searched.append(cmd)
        return real(cmd, mode, path)

    monkeypatch.setattr(sandbox.shutil, "which", which)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "mytool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    env = {"PATH": f"{tmp_path / 'empty'}:{bin_dir}"}
    box = sandbox.Sandbox(user="nobody")
    for _ in range(3):
        assert box.spec(["mytool"], tmp_path, env) is not None
    assert searched == ["mytool"]
    tool.unlink()
    with pytest.raises(FileNotFoundError):
        box.spec(["mytool"], tmp_path, env)
    assert searched == ["mytool", "mytool"]
    with pytest.raises(FileNotFoundError):  # not remembered as found any more
        box.spec(["mytool"], tmp_path, env)
