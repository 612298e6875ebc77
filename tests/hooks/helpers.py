"""Senders and receivers of webhooks for the tests: signing as GitHub and the generic
scheme do (written from the documented formats, not from store/hooks.py), and a callback
receiver on a real socket."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support import LiveServer


def github_headers(secret: str, body: bytes, delivery: str | None = "d-1") -> dict[str, str]:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sig, "X-GitHub-Event": "push"}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return headers


def generic_headers(
    secret: str, body: bytes, ts: int | None = None, request_id: str | None = None
) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    v1 = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Signature": f"t={ts},v1={v1}"}
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    return headers


def seed(c: httpx.Client) -> None:
    assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
    r = c.post("/agents", json={"name": "echo", "runtime": "noop", "default_queue": "q1"})
    assert r.status_code == 201, r.text


def make_hook(c: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "alerts",
        "agent": "echo",
        "prompt_template": "Investigate alert {{ alert.name }} on {{ alert.host }}",
        "params": {"host": "{{ alert.host }}", "sev": "{{ alert.severity | default('low') }}"},
    }
    body.update(overrides)
    r = c.post("/hooks", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def post_hook(server: LiveServer, name: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}/hooks/{name}", content=body, headers=headers, timeout=30)


def payload(**alert: Any) -> bytes:
    return json.dumps({"alert": {"name": "DiskFull", "host": "db-1", **alert}}).encode()


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]
    raw: bytes


@dataclass
class Receiver:
    url: str
    got: list[Received] = field(default_factory=list[Received])
    statuses: list[int] = field(default_factory=list[int])  # answers to give, in order; then 200


@contextmanager
def receiver() -> Iterator[Receiver]:
    """An HTTP server on 127.0.0.1 that records the callbacks it gets."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            state.got.append(Received(json.loads(raw), {k.lower(): v for k, v in self.headers.items()}, raw))
            code = state.statuses.pop(0) if state.statuses else 200
            self.send_response(code)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{srv.server_address[1]}/cb"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        srv.shutdown()
        srv.server_close()
