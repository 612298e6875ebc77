"""Shared fixtures: real databases (SQLite file and PostgreSQL) and a real HTTP server.

PostgreSQL: `META_AGENT_TEST_DATABASE_URL`, else the local server at 127.0.0.1:5432. Each
xdist worker gets its own database, migrated once, truncated between tests. When it cannot
be reached the PostgreSQL cases are skipped with the reason, except under CI (or with
META_AGENT_REQUIRE_POSTGRES=1), where that is an error: CI must never skip them silently.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench.orphans import drop_orphans
from tests.fakes.llm_server import ChatLLM
from tests.support import LiveServer, free_port

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin_url() -> str:
    return os.environ.get("META_AGENT_TEST_DATABASE_URL", PG_DEFAULT)


def _require_pg() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("META_AGENT_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test process."""
    from store import migrate

    admin = sa.make_url(_pg_admin_url())
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    # Unique per run, so concurrent test runs on one machine never drop each other's database.
    name = f"meta_agent_test_{worker_id}_{os.getpid()}"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            drop_orphans(conn, "meta_agent_test")  # left by runs that were killed
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        msg = f"PostgreSQL not reachable at {admin.render_as_string()}: {exc}"
        if _require_pg():
            pytest.fail(msg + " (CI requires it)")
        pytest.skip(msg)
    url = admin.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    yield url
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from store import migrate

    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def _truncate_pg(url: str) -> None:
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Every table the migrations made (but Alembic's own), so a new table cannot leak
        # rows from one test into the next.
        tables = conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).fetchall()
        conn.execute(f"TRUNCATE {', '.join(t[0] for t in tables)} CASCADE")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database URL; every test using it runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "meta-agent.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    return url


@pytest.fixture
async def db(db_url: str):  # type: ignore[no-untyped-def]
    from store.db import Database

    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start real control-plane servers (uvicorn in a thread) on free ports."""
    servers: list[LiveServer] = []

    def start(database_url: str, **overrides: object) -> LiveServer:
        from kernel.settings import Settings

        options: dict[str, object] = {
            "port": free_port(),
            "lease_seconds": 3.0,
            "reaper_interval": 0.2,
            "embedded_worker": False,
            "workspace_root": str(tmp_path / "ws"),
        }
        settings = Settings(database_url=database_url, **{**options, **overrides})  # type: ignore[arg-type]
        srv = LiveServer(settings)
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def server(server_factory, db_url: str) -> LiveServer:  # type: ignore[no-untyped-def]
    """A live control plane on the parametrised backend."""
    return server_factory(db_url)  # type: ignore[no-any-return]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes a test starts (servers, workers); SIGKILLed with their group after."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


@pytest.fixture
def llm() -> Iterator[ChatLLM]:
    """The fake OpenAI-compatible provider on a real socket, played step by step (a step may
    read the request, e.g. to use a task id a tool result gave the model). tests/worker has
    its own `llm` (the plain scripted FakeLLM)."""
    with ChatLLM() as fake:
        yield fake


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory agents' processes can use too: they run sandboxed as another
    user (worker/sandbox.py), to whom the test's own tmp_path (0700, root's) is closed."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="meta-agent-shared-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
