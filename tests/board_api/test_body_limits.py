"""Body limits hold on the bytes read, keys are checked before a body is read, and artifacts
are stored and served in chunks (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import command

from store import migrate
from store.db import sync_url
from tests.board_api.test_api import claim, problem, seed
from tests.support import LiveServer

CHUNK = 1 << 20  # store/artifacts.py's


def chunked(total: int, piece: int = 4096) -> Iterator[bytes]:
    for start in range(0, total, piece):
        yield b"x" * min(piece, total - start)


def test_a_chunked_body_over_the_limit_gets_413(server_factory: Any, db_url: str) -> None:
    srv = server_factory(db_url, max_body_bytes=10_000)
    with srv.client() as c:
        r = c.post("/tasks", content=chunked(50_000), headers={"Content-Type": "application/json"})
        problem(r, 413, "payload_too_large")
        assert r.headers["connection"] == "close"
        # Under the limit, a chunked body is read as usual.
        seed(c)
        body = iter([b'{"agent": "echo", ', b'"prompt": "p"}'])
        r = c.post("/tasks", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text


def _head_only(srv: LiveServer, path: str, auth: str = "") -> bytes:
    """Send a request's head announcing a chunked body, never the body; the first answer."""
    port = int(srv.url.rsplit(":", 1)[1])
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    head += f"Transfer-Encoding: chunked\r\n{auth}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode())
        answer = b""
        while piece := s.recv(65536):  # the server closes after its answer
            answer += piece
        return answer


def test_a_missing_or_wrong_key_is_refused_before_the_body_is_read(server: LiveServer) -> None:
    with server.client() as open_api:
        key = open_api.post("/keys", json={"name": "a", "scopes": ["admin"]}).json()["key"]
    first = _head_only(server, "/api/v1/tasks")
    assert first.startswith(b"HTTP/1.1 401") and b'"code":"unauthorized"' in first
    first = _head_only(server, "/api/v1/tasks", "Authorization: Bearer ma_nope_nope\r\n")
    assert first.startswith(b"HTTP/1.1 401") and b'"code":"invalid_key"' in first
    # A good key passes, and the route sees the same caller.
    with server.client(headers={"Authorization": f"Bearer {key}"}) as c:
        seed(c)
        body = iter([b'{"agent": "echo", "prompt": "p"}'])
        r = c.post("/tasks", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 201 and r.json()["requested_by"] == "a"


async def _chunk_rows(db: Any) -> int:
    async with db.read() as s:
        return int(await s.scalar(sa.text("SELECT count(*) FROM artifact_chunks")))


async def test_artifacts_are_stored_and_served_in_chunks(server_factory: Any, db_url: str, db: Any) -> None:
    server = server_factory(db_url, lease_seconds=60)  # the lease outlives a slow machine's uploads
    data = bytes(range(256)) * (CHUNK * 5 // 2 // 256)  # two and a half chunks
    with server.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        lease = {"X-Lease-Token": claim(c)[0]["token"]}
        url = f"/tasks/{tid}/artifacts/out/data.bin"
        r = c.put(url, headers=lease, content=iter([data[:1000], data[1000:]]))
        assert r.status_code == 201, r.text
        assert r.json()["size"] == len(data) and r.json()["sha256"] == hashlib.sha256(data).hexdigest()
        assert await _chunk_rows(db) == 3
        got = c.get(url)
        assert got.content == data and got.headers["content-length"] == str(len(data))
        # Replaced: the old chunks go; a stale lease's upload leaves nothing behind.
        assert c.put(url, headers=lease, content=b"small").status_code == 201
        problem(c.put(url, headers={"X-Lease-Token": "forged"}, content=data), 409, "stale_lease")
        assert await _chunk_rows(db) == 1
        assert c.get(url).content == b"small"
        r = c.put(f"/tasks/{tid}/artifacts/empty", headers=lease, content=b"")
        assert r.status_code == 201, r.text
        assert c.get(f"/tasks/{tid}/artifacts/empty").content == b""


def test_artifacts_stored_whole_stay_readable_across_the_migration(server_factory: Any, db_url: str) -> None:
    """Down to 0005 (bytes back in `artifacts.content`) and up again (into one chunk)."""
    srv = server_factory(db_url, lease_seconds=60)
    with srv.client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        lease = {"X-Lease-Token": claim(c)[0]["token"]}
        data = b"0123456789" * (CHUNK // 4)
        assert c.put(f"/tasks/{tid}/artifacts/a.txt", headers=lease, content=data).status_code == 201
    srv.stop()
    cfg = migrate.alembic_config(db_url)
    try:
        command.downgrade(cfg, "0005")
        engine = sa.create_engine(sync_url(db_url))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT content FROM artifacts")).scalar_one() == data
        engine.dispose()
    finally:
        command.upgrade(cfg, "head")
    with server_factory(db_url).client() as c:
        assert c.get(f"/tasks/{tid}/artifacts/a.txt").content == data


async def test_chunks_of_uploads_that_never_finished_are_swept(
    server_factory: Any, db_url: str, db: Any
) -> None:
    from store import artifacts
    from store.ids import new_id
    from store.models import ArtifactChunk

    with server_factory(db_url, lease_seconds=60).client() as c:
        seed(c)
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        lease = {"X-Lease-Token": claim(c)[0]["token"]}
        assert c.put(f"/tasks/{tid}/artifacts/kept", headers=lease, content=b"kept").status_code == 201
    async with db.read() as s:
        kept = set((await s.execute(sa.text("SELECT artifact_id FROM artifact_chunks"))).scalars())
    two_days_ago = int((time.time() - 2 * 86400) * 1000)
    stale = str(uuid.UUID(int=two_days_ago << 80 | 7 << 76 | 2 << 62 | 12345))
    uploading = new_id()  # an upload in progress: no artifact yet, and must keep its chunks
    async with db.tx() as tx:
        for staged in (stale, uploading):
            tx.session.add(ArtifactChunk(artifact_id=staged, idx=0, data=b"x"))
    async with db.tx() as tx:
        await artifacts.forget_orphans(tx)
    async with db.read() as s:
        left = set((await s.execute(sa.text("SELECT artifact_id FROM artifact_chunks"))).scalars())
    assert len(kept) == 1 and left == kept | {uploading}
