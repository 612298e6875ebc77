"""`serve` refuses unsafe or impossible starts with a clear message, before listening."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, child_env, free_port


def run_serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meta_agent.server"],
        env=child_env(META_AGENT_PORT=str(free_port()), META_AGENT_EMBEDDED_WORKER="false", **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_refuses_a_public_address_without_api_keys(tmp_path: Path) -> None:
    r = run_serve(tmp_path, META_AGENT_HOST="0.0.0.0", META_AGENT_DATABASE_URL=f"sqlite:///{tmp_path}/a.db")
    assert r.returncode != 0
    assert "refusing to listen on 0.0.0.0 with no API keys" in r.stderr
    assert "Traceback" not in r.stderr


def test_refuses_an_unmigrated_postgresql(pg_url: str, tmp_path: Path) -> None:
    import psycopg
    import sqlalchemy as sa

    admin = sa.make_url(pg_url).set(drivername="postgresql")
    name = admin.database + "_empty"
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        r = run_serve(
            tmp_path, META_AGENT_DATABASE_URL=admin.set(database=name).render_as_string(hide_password=False)
        )
        assert r.returncode != 0
        assert "run `meta-agent db upgrade` first" in r.stderr and "Traceback" not in r.stderr
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
