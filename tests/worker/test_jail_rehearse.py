"""jail_server.rehearse: a warm tool-to-be runs its request's Python once on a sample while
it waits, so that the pages a forked process copies on first write are copied then and not
during a tool's start (~0.2 ms of it, stamped under #15). It must leave no trace: nothing
imported (the tool-to-be's imports are read as the sandbox user), nothing mounted, nothing
written, and a rehearsal that fails must not fail the set that rehearses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_rehearsal_imports_mounts_and_writes_nothing_and_never_raises(tmp_path: Path) -> None:
    workspaces = tmp_path / "workspaces"
    workspaces.mkdir()
    probe = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(ROOT / "worker")!r})
        import jail, jail_server
        loaded = set(sys.modules)
        mounts = open("/proc/self/mountinfo").read()
        parent = {str(workspaces)!r}
        plan = {{"mode": "root", "uid": 1, "gid": 1, "hide": [{str(tmp_path / "hidden")!r}],
                 "expose": [{str(tmp_path / "exposed")!r}], "parent": parent}}
        ready = jail.Premounted(plan)
        ready.parent = os.open(parent, os.O_PATH | os.O_DIRECTORY)  # as mount() leaves it
        broken = jail.Premounted({{"mode": "root"}})  # a plan without its keys: it raises inside
        broken.parent = ready.parent
        for r in (None, ready, broken):
            jail_server.rehearse(r)
        print(json.dumps({{
            "imported": sorted(set(sys.modules) - loaded),
            "same_mounts": open("/proc/self/mountinfo").read() == mounts,
            "written": sorted(os.listdir(parent)),
            "still_usable": ready.parent >= 0,
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "imported": [],
        "same_mounts": True,
        "written": [],
        "still_usable": True,
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["workspaces"]  # hidden/exposed not made
