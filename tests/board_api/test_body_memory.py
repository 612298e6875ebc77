"""A large body costs the server bounded memory on every route that takes one.

The server runs in a subprocess so its memory can be read from /proc: the peak resident set
(VmHWM, reset through clear_refs before each request) against the resident set before.
Each body is 300 MB, chunked (no Content-Length to refuse it by): without a key it must be
refused (401) before it is read; with one, cut off (413) once it passes the route's limit.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.slack_server import FakeSlack
from tests.support import free_port, spawn, stop_group, wait_for

pytestmark = pytest.mark.xdist_group("body_memory")

MB = 1 << 20
BIG = 300 * MB
GROWTH = 50 * MB
ARTIFACT_LIMIT = 64 * MB
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
SLACK_HEADERS = {"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=00"}


@dataclass
class Plane:
    url: str
    pid: int
    admin: str
    worker: str
    task_id: str
    token: str


async def _make_keys(url: str) -> tuple[str, str]:
    from store import keys
    from store.db import Database

    db = Database(url)
    try:
        async with db.tx() as tx:
            _, admin = await keys.create_key(tx, "admin", ["admin"])
            _, worker = await keys.create_key(tx, "worker", ["worker"])
    finally:
        await db.dispose()
    return admin, worker


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    from store import migrate

    tmp = tmp_path_factory.mktemp("body")
    url = f"sqlite:///{tmp / 'body.db'}"
    migrate.upgrade(url)
    admin, worker = asyncio.run(_make_keys(url))
    port = free_port()
    with FakeSlack() as slack:
        proc = spawn(
            ["-m", "cli.serve"],
            log=tmp / "server.log",
            META_AGENT_DATABASE_URL=url,
            META_AGENT_PORT=str(port),
            META_AGENT_EMBEDDED_WORKER="false",
            META_AGENT_LEASE_SECONDS="3600",  # the claimed task stays ours however slow the machine
            META_AGENT_MAX_ARTIFACT_BYTES=str(ARTIFACT_LIMIT),
            META_AGENT_SLACK_BOT_TOKEN="xoxb-test",
            META_AGENT_SLACK_SIGNING_SECRET="slack-secret",
            META_AGENT_SLACK_MODE="http",
            META_AGENT_SLACK_API_BASE=slack.api_base,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: httpx.get(base + "/readyz", timeout=1).status_code == 200, 30, "the server")
            task_id, token = _claimed_task(base + "/api/v1", admin, worker)
            yield Plane(base, proc.pid, admin, worker, task_id, token)
        finally:
            stop_group(proc)


def _claimed_task(api: str, admin: str, worker: str) -> tuple[str, int]:
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {admin}"}) as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        r = c.post("/agents", json={"name": "echo", "runtime": "noop", "default_queue": "q1"})
        assert r.status_code == 201, r.text
        assert (
            c.post("/hooks", json={"name": "alerts", "agent": "echo", "prompt_template": "p"}).status_code
            == 201
        )
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        r = c.post(
            "/worker-queues/q1/claim",
            json={"worker_id": "w1", "max_tasks": 1, "wait_seconds": 0},
            headers={"Authorization": f"Bearer {worker}"},
        )
        (item,) = r.json()["tasks"]
        return tid, item["token"]


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def measured(pid: int, call: Callable[[], Any]) -> tuple[Any, int]:
    """`call()`'s result and how far the server's resident set rose above where it was."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _kb(pid, "VmRSS")
    result = call()
    return result, _kb(pid, "VmHWM") - before


class Body:
    """A chunked body of `total` bytes that records how much of it went out."""

    def __init__(self, total: int, seed: bytes = b"x") -> None:
        self.total, self.sent = total, 0
        self.block = (seed * MB)[:MB]

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.total:
            piece = self.block[: self.total - self.sent]
            self.sent += len(piece)
            yield piece


def _route(plane: Plane, route: str) -> tuple[str, str, dict[str, str], str]:
    """method, URL, headers and the key that may use it."""
    api = plane.url + "/api/v1"
    json_ = {"Content-Type": "application/json"}
    return {
        "tasks": ("POST", api + "/tasks", json_, plane.admin),
        "events": ("POST", f"{api}/tasks/{plane.task_id}/events", json_, plane.worker),
        "artifact": (
            "PUT",
            f"{api}/tasks/{plane.task_id}/artifacts/big.bin",
            {"Content-Type": "application/octet-stream", "X-Lease-Token": plane.token},
            plane.worker,
        ),
        "chat": ("POST", api + "/chat", json_, plane.admin),
        "mcp": ("POST", plane.url + "/mcp", MCP_HEADERS, plane.admin),
        "slack": ("POST", plane.url + "/slack/events", SLACK_HEADERS, ""),
        "hook": ("POST", plane.url + "/hooks/alerts", {"X-Hub-Signature-256": "sha256=00"}, ""),
    }[route]


ROUTES = ["tasks", "events", "artifact", "chat", "mcp"]
# Slack's and webhooks' requests carry no key (a signature covers the body): refused by the limit.
CASES = [(r, keyed) for r in ROUTES for keyed in (False, True)] + [("slack", False), ("hook", False)]


@pytest.mark.parametrize(("route", "keyed"), CASES, ids=[f"{r}-{'key' if k else 'no-key'}" for r, k in CASES])
def test_a_300_mb_chunked_body_is_refused_in_bounded_memory(plane: Plane, route: str, keyed: bool) -> None:
    method, url, headers, key = _route(plane, route)
    if keyed:
        headers = {**headers, "Authorization": f"Bearer {key}"}
    body = Body(BIG)

    def send() -> httpx.Response:
        return httpx.request(method, url, content=iter(body), headers=headers, timeout=60)

    resp, growth = measured(plane.pid, send)
    assert growth < GROWTH, f"the server grew by {growth / MB:.0f} MB"
    expected = 413 if keyed or route in ("slack", "hook") else 401
    assert resp.status_code == expected, resp.text[:300]
    if expected == 413:
        assert resp.json()["code"] == "payload_too_large"
    assert resp.headers["connection"] == "close"
    assert body.sent < BIG, "the server read the whole body"


def test_a_large_artifact_streams_in_and_out_in_bounded_memory(plane: Plane) -> None:
    body = Body(60 * MB, seed=bytes(range(251)))  # a period prime to the chunk size
    digest = hashlib.sha256(b"".join(Body(60 * MB, seed=bytes(range(251))))).hexdigest()
    auth = {"Authorization": f"Bearer {plane.worker}"}
    url = f"{plane.url}/api/v1/tasks/{plane.task_id}/artifacts/data/big.bin"

    def upload() -> httpx.Response:
        return httpx.put(url, content=iter(body), headers={**auth, "X-Lease-Token": plane.token}, timeout=60)

    resp, growth = measured(plane.pid, upload)
    assert resp.status_code == 201, resp.text
    assert resp.json()["size"] == 60 * MB and resp.json()["sha256"] == digest
    assert growth < GROWTH, f"the upload grew the server by {growth / MB:.0f} MB"

    def download() -> tuple[str, int]:
        h, size = hashlib.sha256(), 0
        with httpx.stream("GET", url, headers=auth, timeout=60) as r:
            assert r.status_code == 200
            for piece in r.iter_bytes():
                h.update(piece)
                size += len(piece)
        return h.hexdigest(), size

    (got, size), growth = measured(plane.pid, download)
    assert (got, size) == (digest, 60 * MB)
    assert growth < GROWTH, f"the download grew the server by {growth / MB:.0f} MB"
