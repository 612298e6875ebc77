"""DNS rebinding and cross-site requests: Host and Origin are checked on every route."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from board_api import hostguard
from board_api.hostguard import HostRule, parse_allowed_hosts
from tests.support import LiveServer

EVIL = "http://evil.example.com"


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "guard.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def plane(server_factory: Any, sqlite_url: str) -> LiveServer:
    srv: LiveServer = server_factory(sqlite_url, allowed_hosts="cp.example.com, *.corp.test")
    with srv.client() as c:
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        assert (
            c.post("/agents", json={"name": "echo", "runtime": "noop", "default_queue": "q1"}).status_code
            == 201
        )
    return srv


def _task(srv: LiveServer, **headers: str) -> httpx.Response:
    return httpx.post(f"{srv.url}/api/v1/tasks", json={"agent": "echo", "prompt": "hi"}, headers=headers)


def _count(srv: LiveServer) -> int:
    with srv.client() as c:
        return len(c.get("/tasks").json()["items"])


def _problem(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == code


def test_a_foreign_host_is_misdirected_on_every_route(plane: LiveServer) -> None:
    rebound = {"Host": f"attacker.example:{plane.settings.port}"}
    _problem(_task(plane, **rebound), 421, "misdirected_request")
    tid = _task(plane).json()["id"]
    base = plane.url
    for method, path in [
        ("GET", f"/api/v1/tasks/{tid}/stream"),
        ("GET", f"/api/v1/tasks/{tid}"),
        ("POST", "/api/v1/chat"),
        ("GET", "/"),
        ("GET", "/static/app.js"),
        ("GET", "/api/v1/board"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("POST", "/mcp"),
        ("POST", "/slack/events"),
    ]:
        resp = httpx.request(method, base + path, headers=rebound, json={"message": "hi"})
        _problem(resp, 421, "misdirected_request")
    assert _count(plane) == 1  # only the task created with the right Host


def test_a_cross_site_state_change_is_refused_open_or_keyed(plane: LiveServer) -> None:
    for origin in (EVIL, "null", f"http://localhost:{plane.settings.port + 1}"):
        _problem(_task(plane, Origin=origin), 403, "cross_origin_refused")
    assert _count(plane) == 0
    with plane.client() as c:
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
    keyed = {"Authorization": f"Bearer {admin}"}
    _problem(_task(plane, Origin=EVIL, **keyed), 403, "cross_origin_refused")
    # Reads cross-site are the browser's business (no CORS headers are ever sent).
    assert httpx.get(f"{plane.url}/api/v1/tasks", headers={"Origin": EVIL, **keyed}).status_code == 200
    assert _task(plane, **keyed).status_code == 201


def test_same_origin_and_no_origin_pass(plane: LiveServer) -> None:
    port = plane.settings.port
    assert _task(plane).status_code == 201  # CLI, SDK, workers: no Origin
    assert _task(plane, Origin=plane.url).status_code == 201  # the board itself
    same_name = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
    assert _task(plane, **same_name).status_code == 201
    assert _count(plane) == 3


def test_allowed_hosts_admit_a_proxy_name(plane: LiveServer) -> None:
    # A proxy terminating TLS forwards its public name; the page it serves posts from https.
    proxied = {"Host": "cp.example.com", "Origin": "https://cp.example.com"}
    assert _task(plane, **proxied).status_code == 201
    assert httpx.get(f"{plane.url}/", headers={"Host": "board.corp.test"}).status_code == 200
    for host in ("corp.test", "cp.example.com.evil.test", "evilcorp.test"):
        _problem(httpx.get(f"{plane.url}/healthz", headers={"Host": host}), 421, "misdirected_request")
    # A declared name does not make other sites' pages trusted.
    _problem(_task(plane, Host="cp.example.com", Origin=EVIL), 403, "cross_origin_refused")


def test_a_bare_wildcard_or_a_malformed_allowed_host_is_refused() -> None:
    for raw in ("*", "cp.example.com,*", "a b", "user@host", "*.*.x"):
        with pytest.raises(ValueError, match="ALLOWED_HOSTS"):
            parse_allowed_hosts(raw)
    assert parse_allowed_hosts(" A.example.com , *.corp.test,x:8443 ") == [
        "a.example.com",
        "*.corp.test",
        "x:8443",
    ]


def test_a_wildcard_bind_answers_to_the_machine_and_the_address_reached() -> None:
    rule = HostRule("0.0.0.0", parse_allowed_hosts("cp.example.com"))
    assert rule.host_ok(f"{socket.gethostname()}:8080")
    assert rule.host_ok("10.1.2.3:8080", local_addr="10.1.2.3")  # the interface the client reached
    assert rule.host_ok("cp.example.com") and rule.host_ok("localhost:1")
    assert not rule.host_ok("10.1.2.3:8080", local_addr="10.9.9.9")
    assert not rule.host_ok("rebound.example.net:8080", local_addr="127.0.0.1")
    # A specific bind answers to its own address, not to other names of the machine.
    assert not HostRule("10.1.2.3").host_ok(f"{socket.gethostname()}.invalid")


def test_accepted_hosts_are_remembered_per_address_and_refused_ones_never() -> None:
    rule = HostRule("0.0.0.0")
    for _ in range(2):  # the second round answers from what the first remembered
        assert rule.host_ok("10.1.2.3:8080", local_addr="10.1.2.3")
        assert not rule.host_ok("10.1.2.3:8080", local_addr="10.9.9.9")  # another interface
        assert rule.host_ok("127.0.0.1:8000", local_addr="127.0.0.1")
        assert not rule.host_ok("rebound.example.net:8080", local_addr="127.0.0.1")
    # A client sending made-up names grows nothing, and a flood of accepted ones stays bounded.
    for i in range(2000):
        assert not rule.host_ok(f"evil{i}.example.net", local_addr="127.0.0.1")
        assert rule.host_ok(f"127.0.0.{i % 250 + 1}:{i}", local_addr="127.0.0.1")
    assert len(rule._accepted) <= hostguard._ACCEPTED_MAX
    assert rule.host_ok("localhost:1") and not rule.host_ok("evil1.example.net")
