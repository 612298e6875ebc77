"""Databases named after the process that made them, and dropped once that process is gone.

Used by the test suite's PostgreSQL databases and the benches'. A bench killed midway leaves
its servers running (each in its own session); given a database of the same name again,
such a server's LISTEN connection reconnects to it and says hello, and the next bench's
server takes it for another replica: it then sends a NOTIFY with every commit and reads an
exchange's and a hand-off's rows before the commit, a second round trip (seen on
2026-12-06: a `command` task's claim answer 0.3 ms later on PostgreSQL, and every commit
notifying). A name of its own per process, and the dead processes' databases dropped with
their connections, leave such a server nothing to reconnect to.
"""

from __future__ import annotations

import os

import psycopg

__all__ = ["alive", "drop_orphans", "own_name"]


def own_name(prefix: str) -> str:
    """`prefix` and this process's id: `drop_orphans(prefix)` drops it once the process is gone."""
    return f"{prefix}_{os.getpid()}"


def drop_orphans(conn: psycopg.Connection, prefix: str) -> list[str]:
    """Drop the databases `prefix_..._PID` whose process is gone; their names."""
    like = prefix.replace("_", r"\_") + r"\_%"
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)).fetchall()
    dropped = []
    for (datname,) in rows:
        pid = datname.rsplit("_", 1)[-1]
        if pid.isdigit() and not alive(int(pid)):
            conn.execute(f'DROP DATABASE IF EXISTS "{datname}" WITH (FORCE)')
            dropped.append(datname)
    return dropped


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
