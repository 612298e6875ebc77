"""The peers' virtualenvs (git-ignored, pinned, never project dependencies) and their services."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"

# Pinned so two runs months apart compare the same peers; bump on purpose, with a note.
REQUIREMENTS: dict[str, list[str]] = {
    "celery": ["celery[redis]==5.7.0", "kombu==5.7.0", "redis==8.1.0"],
    "procrastinate": ["procrastinate==3.10.0", "psycopg[binary,pool]==3.3.9", "psycopg-pool==3.3.3"],
}

REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def ensure_venv(peer: str, say: Callable[[str], None] = print) -> Path:
    """The peer's venv with exactly its pinned requirements; (re)built when the pins change."""
    reqs = REQUIREMENTS[peer]
    root = VENVS / peer
    marker = root / ".pins"
    if marker.exists() and marker.read_text() == "\n".join(reqs):
        return python(peer)
    say(f"[{peer}] creating {root} ({', '.join(reqs)}) ...")
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    subprocess.run(
        [str(python(peer)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *reqs],
        check=True,
    )
    marker.write_text("\n".join(reqs))
    return python(peer)


def reachable(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def ensure_service(name: str, say: Callable[[str], None] = print) -> None:
    """Redis at 6379 or PostgreSQL at 5432: started the way .ci/run does when down, else a clear exit."""
    port = {"redis": 6379, "postgresql": 5432}[name]
    if reachable(port):
        return
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*"))
    if name == "redis":
        cmd = REDIS_START
    elif versions:
        cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
    else:
        raise SystemExit("PostgreSQL is not reachable on 127.0.0.1:5432 and no cluster is in /etc/postgresql")
    say(f"{name} is down on 127.0.0.1:{port}; starting it: {' '.join(cmd)}")
    try:
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SystemExit(
            f"{name} is not reachable on 127.0.0.1:{port} and {cmd[0]} is not installed"
        ) from None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if reachable(port):
            return
        time.sleep(0.5)
    raise SystemExit(
        f"{name} is not reachable on 127.0.0.1:{port} and could not be started ({' '.join(cmd)})"
    )
