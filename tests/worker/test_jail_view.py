"""jail.Premounted on its own, in a mount namespace of a child process: what it takes for
the same view as prepare_view's, and when it must not be used. (The launch server's use of it,
compared mount by mount with a launcher of its own: tests/worker/test_launcher.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from worker import jail


@pytest.fixture(autouse=True)
def _root() -> None:
    # Mounts in a new namespace are root's; CI runs as root and must run these, never skip.
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("these tests need root (CI requires them)")
        pytest.skip("mounts in a new namespace: root's")


def _in_a_namespace(work: Any) -> Any:
    """`work()`'s JSON result, run in a forked child with a private mount namespace."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(r)
        try:
            if jail.libc.unshare(jail.CLONE_NEWNS) != 0:
                raise OSError("unshare(CLONE_NEWNS) failed")
            jail.mount(None, "/", None, jail.MS_REC | jail.MS_PRIVATE)
            out = json.dumps(work())
        except BaseException as exc:  # reported to the test, never raised in a fork
            out = json.dumps({"error": repr(exc)})
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def test_a_directory_to_hide_made_after_the_premounts_is_not_left_visible(tmp_path: Path) -> None:
    """Premounts wait, sometimes long: a `hide` directory that did not exist when they were
    made has no tmpfs over it, so a request then must mount its whole view anew."""
    ws = tmp_path / "ws"
    (ws / "task").mkdir(parents=True)
    later = tmp_path / "home"
    spec: Any = {"mode": "userns", "uid": 0, "gid": 0, "cwd": str(ws / "task"), "hide": [str(later)]}

    def work() -> dict[str, bool]:
        ready = jail.Premounted(jail.view_plan(spec))
        ready.mount()
        before = ready.matches(spec)
        later.mkdir()
        after = ready.matches(spec)
        ready.undo()
        return {"before": before, "after": after}

    assert _in_a_namespace(work) == {"before": True, "after": False}


def test_undo_leaves_the_namespace_as_it_was(tmp_path: Path) -> None:
    """A request with another plan gets a namespace without the premounts (then mounts its
    own view from nothing): every tmpfs and clone made is gone again."""
    blocked = tmp_path / "private"  # 0700, root's: the sandbox user may not pass it
    (blocked / "ws" / "task").mkdir(parents=True)
    blocked.chmod(0o700)
    spec: Any = {
        "mode": "root",
        "uid": 65534,
        "gid": 65534,
        "cwd": str(blocked / "ws" / "task"),
        "expose": [str(Path(os.__file__).parent)],
    }

    def work() -> dict[str, Any]:
        before = Path("/proc/self/mountinfo").read_text().splitlines()
        ready = jail.Premounted(jail.view_plan(spec))
        ready.mount()
        during = Path("/proc/self/mountinfo").read_text().splitlines()
        ready.undo()
        after = Path("/proc/self/mountinfo").read_text().splitlines()
        return {"added": len(during) - len(before), "same": after == before, "covered": ready.covered}

    got = _in_a_namespace(work)
    assert got["added"] >= 1 and got["same"] and got["covered"] == [], got
