"""Where an agent's processes run: never with the worker's identity, environment or view.

The `command` runtime and the `bash` tool start processes whose code the agent (a model, or
whoever wrote its parameters) controls. The worker holds a key to the control plane (and the
embedded worker shares its process with the server), so those processes must not be able to
read it: not from their environment, not from an ancestor's /proc/PID/environ or cmdline,
not from a file. Filtering names cannot promise that; separation by the kernel can:

- environment: built from an allow-list (worker.process.base_environment) plus the task's
  own variables; the worker's is never inherited.
- processes: every tool process is PID 1's child in a new PID namespace with its own /proc,
  so no ancestor is visible at all; the worker is also non-dumpable (worker.main).
- identity, worker running as root: the tool runs as `META_AGENT_SANDBOX_USER` (default
  `nobody`) with no_new_privs, so files only root may read (keys, the database, other
  users' homes) stay closed and sudo/setuid cannot bring root back. Its working directory
  is mounted for it with an idmap (its owner's files appear as the sandbox user's; what it
  writes belongs on disk to the directory's owner), so `exec --local --cwd DIR` keeps
  working in the user's own directory, and directories on the way it may not pass are
  covered by an empty tmpfs.
- identity, worker not root: an unprivileged user namespace maps the worker's uid to
  itself, so the tool has the worker's uid but sees only its own PID namespace; the
  worker's home directory (where `~/.config/meta-agent` lives) is covered by an empty
  tmpfs unless it is the working directory itself or inside it.

Where the kernel refuses namespaces (not Linux, user namespaces disabled), no tool process
runs (`sandbox_unavailable`) unless the operator sets `META_AGENT_SANDBOX=off`, saying so
explicitly: a silent fallback would run tools with the worker's rights while the docs
promise otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker import launcher

__all__ = ["Sandbox", "SandboxUnavailable", "configure", "current", "jail_argv", "not_dumpable"]

log = logging.getLogger(__name__)

JAIL = Path(__file__).with_name("jail.py")
MODES = ("auto", "off")


# Programs remembered per Sandbox (a bound: a worker runs a few).
_FOUND_KEPT = 256


class SandboxUnavailable(RuntimeError):
    """No sandbox can be set up here and `META_AGENT_SANDBOX=off` was not given."""


@dataclass
class Sandbox:
    """`mode`: `auto` (sandbox every tool process, refuse when impossible) or `off`."""

    mode: str = "auto"
    user: str = "nobody"
    _kind: str | None = field(default=None, init=False, repr=False)
    _failure: str | None = field(default=None, init=False, repr=False)
    _fixed: tuple[int, int, list[str]] | None = field(default=None, init=False, repr=False)
    # (program, PATH) -> where `which` found it last (see _on_path).
    _found: dict[tuple[str, str], str] = field(
        default_factory=dict[tuple[str, str], str], init=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"META_AGENT_SANDBOX must be one of {', '.join(MODES)}, not {self.mode!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Sandbox:
        """`META_AGENT_SANDBOX` and `META_AGENT_SANDBOX_USER`, for entry points without a Settings."""
        return cls(
            environ.get("META_AGENT_SANDBOX") or "auto", environ.get("META_AGENT_SANDBOX_USER") or "nobody"
        )

    def kind(self) -> str | None:
        """`root`, `userns` or None (off); raises SandboxUnavailable when it cannot be had."""
        if self.mode == "off":
            return None
        if self._kind is None and self._failure is None:
            self._probe()
        if self._failure is not None:
            raise SandboxUnavailable(self._failure)
        return self._kind

    def _ids(self) -> tuple[int, int]:
        if os.geteuid() != 0:
            return os.getuid(), os.getgid()
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            raise SandboxUnavailable(
                f"META_AGENT_SANDBOX_USER {self.user!r} is no user on this machine"
            ) from None
        if entry.pw_uid == 0:
            raise SandboxUnavailable("META_AGENT_SANDBOX_USER must not be root")
        return entry.pw_uid, entry.pw_gid

    def _probe(self) -> None:
        kind = "root" if os.geteuid() == 0 else "userns"
        try:
            if not sys.platform.startswith("linux"):
                raise SandboxUnavailable("tool processes are sandboxed on Linux only")
            with tempfile.TemporaryDirectory(prefix="meta-agent-sandbox-") as tmp:
                argv = self._wrap(kind, ["true"], Path(tmp), ())
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=30, env={"PATH": os.defpath}, cwd=tmp
                )
            if done.returncode != 0:
                raise SandboxUnavailable(f"the kernel refused the sandbox: {done.stderr.strip()[-500:]}")
        except (SandboxUnavailable, OSError, subprocess.SubprocessError) as exc:
            self._failure = (
                f"{exc}; tool processes are not started without one (set META_AGENT_SANDBOX=off to run "
                "them with the worker's own rights)"
            )
            return
        self._kind = kind

    def _spec(self, kind: str, cwd: Path, hide: Sequence[str]) -> dict[str, Any]:
        if self._fixed is None:  # the same for every tool: a user lookup and realpaths, once
            uid, gid = self._ids()
            # The worker's own Python stays runnable (read-only): commands often are `python ...`.
            expose = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)})
            self._fixed = (uid, gid, expose)
        uid, gid, expose = self._fixed
        return {
            "mode": kind,
            "uid": uid,
            "gid": gid,
            "cwd": str(cwd),
            "hide": list(hide),
            "expose": list(expose),
        }

    def _wrap(self, kind: str, argv: Sequence[str], cwd: Path, hide: Sequence[str]) -> list[str]:
        return jail_argv(self._spec(kind, cwd, hide), argv)

    def spec(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> dict[str, Any] | None:
        """What jail.py needs to run `argv` in `cwd` inside the sandbox; None when it is off.

        Raises FileNotFoundError for a program that is not there, as a direct start would.
        """
        kind = self.kind()
        if kind is None:
            return None
        program = argv[0]
        if "/" not in program and not self._on_path(program, env.get("PATH", os.defpath)):
            raise FileNotFoundError(2, "No such file or directory", program)
        if "/" in program and not (cwd / program).exists():
            raise FileNotFoundError(2, "No such file or directory", program)
        hide = [] if kind == "root" else sorted({pwd.getpwuid(os.getuid()).pw_dir, str(Path.home())})
        return self._spec(kind, cwd.resolve(), hide)

    def _on_path(self, program: str, path: str) -> bool:
        """Whether `program` is an executable on `path`, as `shutil.which` says. Where it was
        found is remembered and checked again (one access and one stat) rather than searched
        for: `which` tries every entry of PATH, 16 on a pyenv machine, ~40 µs of a command's
        start. A remembered program found no longer is searched for again; one installed
        earlier on PATH since is not, which changes nothing here: this only refuses a program
        that is nowhere (the sandbox's exec searches PATH itself)."""
        key = (program, path)
        hit = self._found.get(key)
        if hit is not None and os.access(hit, os.X_OK) and not os.path.isdir(hit):
            return True
        hit = shutil.which(program, path=path)
        if hit is None:
            self._found.pop(key, None)
            return False
        if len(self._found) >= _FOUND_KEPT:
            self._found.clear()
        self._found[key] = hit
        return True

    def wrap(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> list[str]:
        """The argv that runs `argv` in `cwd` inside the sandbox (itself when off), as its own
        `python jail.py` process (worker.process uses the launch server instead when it can).

        Raises FileNotFoundError for a program that is not there, as a direct start would.
        """
        spec = self.spec(argv, cwd, env)
        return list(argv) if spec is None else jail_argv(spec, argv)


def jail_argv(spec: Mapping[str, Any], argv: Sequence[str]) -> list[str]:
    """The command line of a launcher of its own for one tool (`python jail.py SPEC ARGV`)."""
    return [sys.executable, "-I", "-S", str(JAIL), json.dumps(spec), *argv]


_current = Sandbox()


def not_dumpable() -> None:
    """Close this process's /proc/PID/{environ,mem,...} to processes of the same user (they
    belong to root then): the embedded worker shares the server's process and settings."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        log.debug("could not mark the process non-dumpable")


def configure(sandbox: Sandbox) -> Sandbox:
    """Make `sandbox` the one every tool process of this worker uses; it is probed now, so a
    worker that cannot sandbox says so at start, not at its first task. Entry points that run
    a worker (`serve`, `worker start`, `exec --local`) call it."""
    global _current
    _current = sandbox
    not_dumpable()
    if sandbox.mode == "off":
        log.warning(
            "META_AGENT_SANDBOX=off: agents' processes run as this worker's user and can read "
            "what it can read (its key file included)"
        )
        return sandbox
    try:
        log.info("tool processes run sandboxed (%s)", sandbox.kind())
    except SandboxUnavailable as exc:
        log.error("no sandbox for tool processes: %s", exc)
        return sandbox
    try:
        launcher.shared().prestart()  # so the first task's tool does not wait for its Python to start
    except OSError as exc:
        log.warning("the launch server did not start (%s): each tool gets a launcher of its own", exc)
    return sandbox


def current() -> Sandbox:
    """The sandbox configured for this process (the default: `auto`, user `nobody`)."""
    return _current
