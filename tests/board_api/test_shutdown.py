"""A server stopped without its lifespan shutdown (uvicorn's forced exit: every task cancelled
at once, open streams included) still closes all of its PostgreSQL connections."""

from __future__ import annotations

import threading

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from tests.board_api.test_api import seed
from tests.support import wait_for

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def backends(db_url: str) -> int:
    """Sessions connected to the test database, other than the one asking."""
    dsn = sa.make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_forced_exit_closes_every_connection(server_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(db_url)
    with server.client() as c:
        seed(c)
        for i in range(5):
            assert c.post("/tasks", json={"agent": "echo", "prompt": f"t{i}"}).status_code == 201
        assert len(c.get("/tasks").json()["items"]) == 5
    streaming = threading.Event()

    def follow_board() -> None:
        try:
            with (
                httpx.Client(base_url=server.url, timeout=30) as s,
                s.stream("GET", "/api/v1/board/stream") as r,
            ):
                for _ in r.iter_lines():
                    streaming.set()
        except httpx.HTTPError:
            pass  # the server went away under us: that is the point

    t = threading.Thread(target=follow_board)
    t.start()
    assert streaming.wait(10)
    assert backends(db_url) >= 2  # the pool's connections and the LISTEN one
    server.server.force_exit = True  # no lifespan shutdown
    server.stop()
    t.join(10)
    assert not t.is_alive()
    wait_for(lambda: backends(db_url) == 0, 10, "every connection of the stopped server to close")
