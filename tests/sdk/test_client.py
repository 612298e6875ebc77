"""The SDK client against an in-test HTTP transport (the process edge): shapes, errors, SSE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from sdk import client as client_mod
from sdk.client import ApiError, AsyncControlPlaneClient, ControlPlaneClient, SSEParser
from sdk.exchange import ExchangeOut
from sdk.schemas import EventOut, StreamEnd

URL = "http://plane.test:8080"


def problem(status: int, code: str, detail: str) -> httpx.Response:
    body = {"type": "about:blank", "title": "Nope", "status": status, "detail": detail, "code": code}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


class Recorder:
    """A transport handler that answers from a route table and records every request."""

    def __init__(self, routes: dict[tuple[str, str], Any]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes[(request.method, request.url.path)]
        if callable(answer):
            answer = answer(request)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


NOW = "2026-01-02T03:04:05Z"


def task(**fields: Any) -> dict[str, Any]:
    """A task as the API serves it (`TaskOut`)."""
    base = dict.fromkeys(
        ("agent", "team", "requested_by", "parent_id", "retry_of", "phase", "worker_id", "lease_expires_at",
         "result", "error", "pending_input", "started_at", "finished_at", "duration_seconds",
         "plan", "failure_class", "failure_hint", "schedule_id", "waiting_for")
    ) | {"needs": []}  # fmt: skip
    base |= {"id": "t1", "queue": "default", "prompt": "p", "parameters": {}, "source": "api",
             "status": "pending", "attempt": 0, "max_attempts": 3, "cancel_requested": False,
             "inputs": {}, "usage": {}, "last_seq": 0, "created_at": NOW, "updated_at": NOW}  # fmt: skip
    return base | fields


def agent(**fields: Any) -> dict[str, Any]:
    """An agent as the API serves it (`AgentOut`)."""
    base = {"id": "a1", "name": "a", "description": "", "runtime": "noop", "model": None, "instructions": None,
            "command": None, "parameters": {}, "tools": [], "mcp_servers": [], "policy": {}, "provider": {},
            "default_queue": None, "timeout_seconds": 600, "risky": False, "created_at": NOW, "updated_at": NOW}  # fmt: skip
    return base | fields


def sync_client(routes: dict[tuple[str, str], Any], **kw: Any) -> tuple[ControlPlaneClient, Recorder]:
    rec = Recorder(routes)
    return ControlPlaneClient(URL, transport=httpx.MockTransport(rec), **kw), rec


# --- errors ------------------------------------------------------------------------------


def test_problem_json_becomes_api_error_with_its_code():
    c, _ = sync_client({("GET", "/api/v1/tasks/t9"): problem(404, "task_not_found", "no task t9")})
    with pytest.raises(ApiError) as err:
        c.executions.get("t9")
    e = err.value
    assert (e.status, e.code, e.detail) == (404, "task_not_found", "no task t9")
    assert e.body["title"] == "Nope" and not e.retryable
    assert "no task t9" in str(e)


def test_a_non_json_error_still_maps_to_a_code():
    c, _ = sync_client({("GET", "/healthz"): httpx.Response(502, text="bad gateway")})
    with pytest.raises(ApiError) as err:
        c.health()
    assert (err.value.status, err.value.code, err.value.detail) == (502, "http_502", "bad gateway")
    assert err.value.retryable


def test_a_validation_list_becomes_readable_detail():
    body = {"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]}
    c, _ = sync_client({("POST", "/api/v1/tasks"): httpx.Response(422, json=body)})
    with pytest.raises(ApiError) as err:
        c.executions.create(agent="a", prompt="p")
    assert err.value.code == "http_422" and "field required" in err.value.detail


def test_an_answer_that_is_not_the_routes_model_is_invalid_response():
    c, _ = sync_client({("GET", "/api/v1/tasks/t1"): {"id": "t1"}})
    with pytest.raises(ApiError) as err:
        c.executions.get("t1")
    assert (err.value.status, err.value.code) == (200, "invalid_response")
    assert "/api/v1/tasks/t1" in err.value.detail and not err.value.retryable


def test_answers_are_the_models_the_api_serves():
    c, _ = sync_client({("GET", "/api/v1/tasks/t1"): task(id="t1", status="running", agent="a")})
    got = c.executions.get("t1")
    assert (got.id, got.status, got.agent) == ("t1", "running", "a")
    assert got.model_dump(mode="json") == task(id="t1", status="running", agent="a")  # --json prints this


def test_transport_failures_are_status_zero_and_name_the_url():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    c = ControlPlaneClient(URL, transport=httpx.MockTransport(down))
    with pytest.raises(ApiError) as err:
        c.agents.list()
    assert (err.value.status, err.value.code) == (0, "unreachable")
    assert URL in str(err.value) and err.value.retryable


def test_a_real_refused_connection_is_unreachable():
    with ControlPlaneClient("http://127.0.0.1:1", timeout=2) as c, pytest.raises(ApiError) as err:
        c.health()
    assert err.value.code == "unreachable" and "127.0.0.1:1" in str(err.value)


def test_a_read_timeout_is_its_own_code():
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out")

    c = ControlPlaneClient(URL, transport=httpx.MockTransport(slow))
    with pytest.raises(ApiError) as err:
        c.executions.list()
    assert (err.value.status, err.value.code) == (0, "timeout")


# --- shapes ------------------------------------------------------------------------------


def test_url_and_key_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("META_AGENT_URL", "http://env.test:9")
    monkeypatch.setenv("META_AGENT_API_KEY", "mak_123")
    rec = Recorder({("GET", "/api/v1/agents"): {"items": [agent(name="a")]}})
    c = ControlPlaneClient(transport=httpx.MockTransport(rec))
    assert [a.name for a in c.agents.list()] == ["a"]
    req = rec.requests[0]
    assert str(req.url) == "http://env.test:9/api/v1/agents"
    assert req.headers["authorization"] == "Bearer mak_123"


def test_no_key_sends_no_authorization(monkeypatch):
    monkeypatch.delenv("META_AGENT_API_KEY", raising=False)
    c, rec = sync_client({("GET", "/api/v1/worker-queues"): {"items": []}})
    assert c.queues.list() == []
    assert "authorization" not in rec.requests[0].headers


def test_requests_carry_source_and_drop_unset_fields():
    c, rec = sync_client(
        {
            ("POST", "/api/v1/tasks"): task(id="t1"),
            ("GET", "/api/v1/tasks"): {"items": [], "next_cursor": None},
            ("POST", "/api/v1/agents/k8s health/execute"): {
                "execution_id": "t2",
                "status": "pending",
                "task": task(id="t2"),
            },
        },
        source="cli",
    )
    c.executions.create(agent="k8s", prompt="check", parameters={"ns": "prod"})
    assert rec.body() == {"agent": "k8s", "prompt": "check", "parameters": {"ns": "prod"}, "source": "cli"}
    page = c.executions.list(status=["running", "pending"], limit=10)
    assert page.model_dump() == {"items": [], "next_cursor": None}
    assert rec.requests[-1].url.params.multi_items() == [
        ("status", "running"),
        ("status", "pending"),
        ("limit", "10"),
    ]
    c.agents.execute("k8s health", {"worker_queue_id": "q1", "prompt": "go"})
    assert rec.requests[-1].url.raw_path == b"/api/v1/agents/k8s%20health/execute"
    assert rec.body() == {"source": "cli", "worker_queue_id": "q1", "prompt": "go"}


def test_artifacts_come_back_as_bytes_with_names_escaped():
    c, rec = sync_client(
        {("GET", "/api/v1/tasks/t1/artifacts/a b/c.bin"): httpx.Response(200, content=b"\x00\x01")}
    )
    assert c.executions.artifact("t1", "a b/c.bin") == b"\x00\x01"
    assert rec.requests[0].url.raw_path == b"/api/v1/tasks/t1/artifacts/a%20b%2Fc.bin"


ARTIFACT = {"name": "out.txt", "media_type": "text/plain", "size": 2, "sha256": "ab", "created_at": NOW}


async def test_the_worker_protocol_shapes():
    rec = Recorder(
        {
            ("POST", "/api/v1/worker-queues/default/claim"): {
                "tasks": [{"task": task(id="t1"), "agent": None, "token": "tok", "lease_seconds": 60}]
            },
            ("POST", "/api/v1/tasks/t1/complete"): task(id="t1", status="completed"),
            ("POST", "/api/v1/tasks/t1/fail"): task(id="t1", status="failed"),
            ("PUT", "/api/v1/tasks/t1/artifacts/out.txt"): httpx.Response(201, json=ARTIFACT),
            ("DELETE", "/api/v1/workers/w1"): httpx.Response(204),
        }
    )
    async with AsyncControlPlaneClient(URL, timeout=10, transport=httpx.MockTransport(rec)) as c:
        items = await c.worker.claim(
            "default", "w1", max_tasks=4, wait_seconds=30, info={"name": "n", "version": None}
        )
        assert [(i.task.id, i.token) for i in items] == [("t1", "tok")]
        assert rec.body() == {"name": "n", "worker_id": "w1", "max_tasks": 4, "wait_seconds": 30}
        assert rec.requests[-1].extensions["timeout"]["read"] > 30  # the long poll must not time out first
        await c.worker.complete("t1", "tok", {"ok": True}, events=[])
        assert rec.body() == {"token": "tok", "result": {"ok": True}}  # an empty batch is not sent
        await c.worker.fail("t1", "tok", "timeout", "too slow", events=[{"kind": "log", "data": {}}])
        assert rec.body() == {"token": "tok", "error": {"code": "timeout", "message": "too slow"},
                              "events": [{"kind": "log", "data": {}}]}  # fmt: skip
        artifact = await c.worker.put_artifact("t1", "tok", "out.txt", b"hi", "text/plain")
        assert artifact.model_dump(mode="json") == ARTIFACT
        put = rec.requests[-1]
        # The token goes in a header: a query string ends up in access logs.
        assert (put.content, put.headers["content-type"], put.headers["x-lease-token"], put.url.query) == (
            b"hi",
            "text/plain",
            "tok",
            b"",
        )
        assert await c.worker.bye("w1") is None


async def test_a_workers_claim_and_exchange_answers_are_read_from_their_bytes():
    """Validated from the answer's bytes (sdk.resources._claimed): the same models, and an
    answer that is not JSON (a proxy's page) is still `invalid_response`."""
    item = {
        "task": task(id="t2", status="running"),
        "agent": agent(),
        "token": "tok",
        "lease_seconds": 60,
        "checkpoint": None,
    }
    answer = {"reports": [{"id": "t1", "status": "completed", "problem": None}], "tasks": [item]}
    rec = Recorder(
        {
            ("POST", "/api/v1/worker-queues/q/exchange"): answer,
            ("POST", "/api/v1/worker-queues/q/claim"): httpx.Response(200, text="<html>proxy</html>"),
        }
    )
    async with AsyncControlPlaneClient(URL, timeout=10, transport=httpx.MockTransport(rec)) as c:
        got = await c.worker.exchange("q", "w1", [{"id": "t1", "token": "t", "result": None}])
        assert got == ExchangeOut.model_validate(answer)
        with pytest.raises(ApiError) as err:
            await c.worker.claim("q", "w1")
    assert (err.value.status, err.value.code) == (200, "invalid_response")
    assert err.value.detail == "not JSON: '<html>proxy</html>'"  # as for any call


# --- server-sent events ------------------------------------------------------------------


def test_sse_parser_handles_any_chunking_line_endings_and_comments():
    stream = (
        b"retry: 1000\r\n\r\n: ping\n\n"
        b'id: 1\nevent: log\ndata: {"seq": 1}\n\n'
        b"id: 2\revent: message\rdata:line one\rdata: line two\r\r"
        b'event: end\r\ndata: {"id": "t1"}\r\n\r\n'
    )
    for size in (1, 2, 7, len(stream)):
        parser = SSEParser()
        msgs = [m for i in range(0, len(stream), size) for m in parser.feed(stream[i : i + size])]
        assert [(m.event, m.data, m.id) for m in msgs] == [
            ("log", '{"seq": 1}', "1"),
            ("message", "line one\nline two", "2"),
            ("end", '{"id": "t1"}', "2"),
        ], size


def frame(seq: int, kind: str = "log") -> bytes:
    event = {"task_id": "t1", "seq": seq, "kind": kind, "data": {"n": seq}, "attempt": 1, "created_at": NOW}
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(event)}\n\n".encode()


END = b"event: end\ndata: " + json.dumps(task(id="t1", status="completed")).encode() + b"\n\n"


class Flaky:
    """Serves the stream in several connections, each cut short as a restart would."""

    def __init__(self, connections: list[list[bytes | Exception]]) -> None:
        self.connections = connections
        self.requests: list[httpx.Request] = []

    def _chunks(self, parts: list[bytes | Exception]) -> Iterator[bytes]:
        for part in parts:
            if isinstance(part, Exception):
                raise part
            yield part

    async def _achunks(self, parts: list[bytes | Exception]) -> AsyncIterator[bytes]:
        for chunk in self._chunks(parts):
            yield chunk

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        parts = self.connections[len(self.requests) - 1]
        if parts and isinstance(parts[0], httpx.Response):
            return parts[0]
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=self._chunks(parts))


def test_stream_resumes_after_drops_without_losing_or_repeating_events(monkeypatch):
    delays: list[float] = []
    monkeypatch.setattr(client_mod.time, "sleep", delays.append)
    flaky = Flaky(
        [
            [frame(1), frame(2)[:20]],  # cut inside an event: it is not delivered half
            [httpx.ReadError("connection reset")],  # fails before any byte
            [problem(503, "database_unavailable", "restarting")],
            [frame(2), frame(3), httpx.RemoteProtocolError("peer closed")],
            [frame(3), frame(4), END],  # the server repeats 3: the client must not
        ]
    )
    c = ControlPlaneClient(URL, transport=httpx.MockTransport(flaky))
    items = list(c.executions.stream("t1"))
    assert [i.seq for i in items[:-1] if isinstance(i, EventOut)] == [1, 2, 3, 4]
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.task is not None
    assert (end.task.id, end.task.status) == ("t1", "completed")
    resume = [r.headers.get("last-event-id") for r in flaky.requests]
    assert resume == [None, "1", "1", "1", "3"]
    assert delays == [0.0, 0.2, 0.4, 0.0]  # at once after a working connection, else backoff


def test_a_stream_cut_while_quiet_reconnects_without_spinning(monkeypatch):
    delays: list[float] = []
    monkeypatch.setattr(client_mod.time, "sleep", delays.append)
    flaky = Flaky([[b"retry: 1000\n\n: ping\n\n"]] * 20 + [[frame(1), END]])
    c = ControlPlaneClient(URL, transport=httpx.MockTransport(flaky))
    assert [i.kind for i in c.executions.stream("t1")] == ["log", "end"]
    assert delays == [client_mod.STREAM_QUIET_RECONNECT] * 20  # never gives up on a live server


def test_stream_gives_up_after_bounded_retries(monkeypatch):
    monkeypatch.setattr(client_mod.time, "sleep", lambda s: None)
    monkeypatch.setattr(client_mod, "STREAM_MAX_RETRIES", 3)
    flaky = Flaky([[httpx.ConnectError("refused")]] * 10)
    c = ControlPlaneClient(URL, transport=httpx.MockTransport(flaky))
    with pytest.raises(ApiError) as err:
        list(c.executions.stream("t1"))
    assert err.value.code == "unreachable" and len(flaky.requests) == 4


def test_stream_of_an_unknown_task_raises_at_once():
    flaky = Flaky([[problem(404, "task_not_found", "no task t1")]])
    c = ControlPlaneClient(URL, transport=httpx.MockTransport(flaky))
    with pytest.raises(ApiError) as err:
        next(iter(c.executions.stream("t1")))
    assert err.value.code == "task_not_found"


async def test_async_stream_resumes_too(monkeypatch):
    async def no_sleep(seconds: float) -> None:
        return None

    import asyncio

    monkeypatch.setattr(asyncio, "sleep", no_sleep)

    def handler(request: httpx.Request) -> httpx.Response:
        flaky.requests.append(request)
        parts = flaky.connections[len(flaky.requests) - 1]
        return httpx.Response(200, content=flaky._achunks(parts))

    flaky = Flaky([[frame(5), httpx.ReadError("reset")], [frame(6), END]])
    async with AsyncControlPlaneClient(URL, transport=httpx.MockTransport(handler)) as c:
        items = [item async for item in c.executions.stream("t1", after=4)]
    assert [i.seq if isinstance(i, EventOut) else i.kind for i in items] == [5, 6, "end"]
    assert flaky.requests[0].url.params["after"] == "4"
    assert flaky.requests[1].headers["last-event-id"] == "5"
