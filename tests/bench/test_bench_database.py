"""bench.bench.fresh_database on PostgreSQL: a database of this process's own, and those of
processes that are gone dropped (bench/orphans.py says why: a server left by a killed bench
reconnected to a database of the same name and passed for another replica)."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from bench import bench

# Above any pid Linux hands out (pid_max is at most 2**22): never a live process.
DEAD = "meta_agent_bench_999999999"


def _names(conn: psycopg.Connection) -> set[str]:
    return {n for (n,) in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_a_bench_database_is_its_own_and_a_dead_runs_is_dropped(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request.getfixturevalue("pg_url")  # reachable, or skipped (failed in CI) as every store test
    monkeypatch.delenv("META_AGENT_BENCH_DB", raising=False)
    with psycopg.connect(bench.PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DEAD}"')
        admin.execute(f'CREATE DATABASE "{DEAD}"')
        # A server of the killed run still connected to it: dropped all the same.
        with psycopg.connect(bench.PG_ADMIN.rsplit("/", 1)[0] + "/" + DEAD, autocommit=True) as stale:
            url = bench.fresh_database("postgresql", tmp_path)
            mine = url.rsplit("/", 1)[-1]
            try:
                assert mine == f"meta_agent_bench_{os.getpid()}"
                names = _names(admin)
                assert DEAD not in names and mine in names
                with pytest.raises(psycopg.OperationalError):
                    stale.execute("SELECT 1")
            finally:
                admin.execute(f'DROP DATABASE IF EXISTS "{mine}" WITH (FORCE)')
