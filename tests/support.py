"""Test helpers: a live uvicorn server in a thread, subprocess control, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


# Ports for the servers tests start, below the kernel's ephemeral range (32768-60999 here),
# one block per pytest-xdist worker. A port the kernel picked for `bind(0)` was ephemeral:
# between our check and the server's own bind, the kernel could give it to the other xdist
# worker's next `bind(0)` or to an outgoing connection's local end, and a test then talked
# to another test's server (a module fixture of test_body_memory errored once that way).
_PORTS = 1500
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_BLOCK = 20000 + (int(_worker) % 8 if _worker.isdigit() else 0) * _PORTS
# A random start: two runs on one machine (CI beside a developer's) rarely meet.
_cursor = [int.from_bytes(os.urandom(2), "big") % _PORTS]


def free_port() -> int:
    """A port free now, from this xdist worker's own block, each in turn."""
    for _ in range(_PORTS):
        port = _BLOCK + _cursor[0]
        _cursor[0] = (_cursor[0] + 1) % _PORTS
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or still closing): the next one
            return port
    raise RuntimeError(f"no free port in {_BLOCK}-{_BLOCK + _PORTS - 1}")


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `check` until it returns a truthy value, failing after `timeout` seconds.

    For state that lives in another process (a task row, an HTTP endpoint) and offers no
    event to wait on; the poll interval is short and the bound is explicit.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.TransportError, ConnectionError) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


class LiveServer:
    """The real app on a real socket, served by uvicorn on its own event loop thread."""

    def __init__(self, settings: Any) -> None:
        from cli.compose import create_app

        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self.app = create_app(settings)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=settings.port,
                log_level="warning",
                lifespan="on",
                # Open streams (a browser's board) must not hold the shutdown, and with it
                # the closing of the database pool, past the test.
                timeout_graceful_shutdown=3,
            )
        )
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> None:
        self.thread.start()
        wait_for(lambda: self.server.started, 15, "the server to start")

    def stop(self) -> None:
        self.app.state.drain()
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the test server did not stop"

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", timeout=30, **kw)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("META_AGENT_")}
    env["PYTHONPATH"] = str(ROOT)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env.update(extra)
    return env


def spawn(args: list[str], log: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
    """A Python child process (server or worker) with its own process group.

    Its stderr goes to `log` when given (read it when a test fails), else nowhere.
    """
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, *args],
            env=child_env(**env),
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def stop_group(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """Stop a `spawn`ed child and everything it started: SIGTERM, then SIGKILL after `grace`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster of our own, for tests that stop and restart the
    database (the shared server at 127.0.0.1:5432 serves every other test meanwhile)."""

    BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/nonexistent"))

    def __init__(self) -> None:
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="meta-agent-pg-"))
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        os.chmod(self.dir, 0o777)  # initdb runs as the postgres user
        self._as_postgres(
            [str(self.BIN / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres"]
        )

    @classmethod
    def available(cls) -> bool:
        return (cls.BIN / "initdb").exists() and _user_exists("postgres")

    def _as_postgres(self, cmd: list[str]) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            [
                str(self.BIN / "pg_ctl"),
                "-D",
                str(self.dir / "data"),
                "-o",
                opts,
                "-w",
                "-l",
                str(self.dir / "log"),
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres([str(self.BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        import shutil

        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.asynccontextmanager
async def pg_replica(url: str) -> AsyncGenerator[Any]:
    """Another control plane's `Database` on the same PostgreSQL: its own hub, fed by LISTEN."""
    from store.db import Database, libpq_dsn
    from store.hub import listen_postgres

    db = Database(url)
    ready = asyncio.Event()
    listener = asyncio.create_task(listen_postgres(db.hub, libpq_dsn(url), ready))
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        yield db
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await db.dispose()
