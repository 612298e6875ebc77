"""Python SDK for the meta-agent control plane, sync and async, built on httpx.

    from sdk.client import ControlPlaneClient
    with ControlPlaneClient() as c:
        task = c.executions.create(agent="k8s-health", prompt="check the cluster")
        for event in c.executions.stream(task["id"]):
            print(event["kind"], event.get("data"))

Each resource class is written once against a ``send`` callable: the sync client's returns
the decoded answer, the async client's returns a coroutine of it, so ``c.agents.list()`` and
``await ac.agents.list()`` share one implementation. Only ``executions.stream`` differs
(an iterator, or an async iterator).

Errors::

    ApiError                  .status  .code  .detail  .body
      status 4xx / 5xx        the control plane's problem+json answer; ``code`` is its stable code
      status 0, "unreachable" no connection (or it dropped): the message names the URL
      status 0, "timeout"     connected, but no answer in time

This module must import fast (the CLI's list commands use it): httpx and the standard
library only, never litellm, fastapi, sqlalchemy or the store.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from kernel import __version__

__all__ = ["ApiError", "AsyncControlPlaneClient", "ControlPlaneClient", "SSEMessage", "SSEParser"]

API = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8080"
# A live stream may be quiet for long; the server pings every ~15 s, so a longer silence
# means the connection is dead and we reconnect.
STREAM_READ_TIMEOUT = 60.0
STREAM_MAX_RETRIES = 10
STREAM_QUIET_RECONNECT = 0.5

Send = Callable[..., Any]


class ApiError(Exception):
    """A failed call: the problem+json answer of the control plane, or status 0 when none came."""

    def __init__(self, status: int, code: str, detail: str, body: Any = None) -> None:
        super().__init__(f"{detail} [{code}, HTTP {status}]" if status else f"{detail} [{code}]")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body

    @property
    def retryable(self) -> bool:
        """True when the same call may succeed later (no answer, overload, server error)."""
        if self.status == 0:
            return self.code in ("unreachable", "timeout")
        return self.status == 429 or self.status >= 500


def _seg(value: object) -> str:
    return quote(str(value), safe="")


def _clean(d: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (d or {}).items() if v is not None}


def _error_from(resp: httpx.Response) -> ApiError:
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code") or f"http_{status}"
        detail = body.get("detail") or body.get("title") or resp.reason_phrase
        if not isinstance(detail, str):  # e.g. a bare FastAPI validation list
            detail = json.dumps(detail)
        return ApiError(status, str(code), detail, body)
    text = resp.text.strip()
    return ApiError(status, f"http_{status}", text[:500] or resp.reason_phrase, text or None)


def _decode(resp: httpx.Response, pick: str | None, raw: bool) -> Any:
    if resp.status_code >= 400:
        raise _error_from(resp)
    if raw:
        return resp.content
    if resp.status_code == 204 or not resp.content:
        return None
    try:
        data = resp.json()
    except ValueError as exc:
        raise ApiError(resp.status_code, "invalid_response", f"not JSON: {resp.text[:200]!r}") from exc
    return data[pick] if pick else data


def _transport_error(url: str, exc: httpx.TransportError) -> ApiError:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return ApiError(0, "timeout", f"the control plane at {url} did not answer in time ({reason})")
    return ApiError(0, "unreachable", f"cannot reach the control plane at {url}: {reason}")


# --- server-sent events ------------------------------------------------------------------


@dataclass
class SSEMessage:
    event: str
    data: str
    id: str | None


_EOL = re.compile(rb"\r\n|\r|\n")


class SSEParser:
    """Incremental text/event-stream parser: feed bytes as they arrive, get whole messages."""

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Add bytes; return the messages they complete (a blank line ends a message)."""
        self._buf += chunk
        out: list[SSEMessage] = []
        start = 0
        for m in _EOL.finditer(self._buf):
            # A lone \r at the end may be the first half of a \r\n split across chunks.
            if m.group() == b"\r" and m.end() == len(self._buf):
                break
            msg = self._line(self._buf[start : m.start()].decode("utf-8", "replace"))
            if msg is not None:
                out.append(msg)
            start = m.end()
        self._buf = self._buf[start:]
        return out

    def _line(self, line: str) -> SSEMessage | None:
        if not line:
            if not self._data and self._event is None:
                return None
            msg = SSEMessage(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data = None, []
            return msg
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


class _StreamState:
    """Resume bookkeeping shared by the sync and async stream loops."""

    def __init__(self, after: int) -> None:
        self.last_seq = after
        self.failures = 0
        self.done = False
        self.got_bytes = False
        self.got_events = False
        self._parser = SSEParser()

    def request(self) -> dict[str, Any]:
        self._parser, self.got_bytes, self.got_events = SSEParser(), False, False
        headers = {"Accept": "text/event-stream"}
        if self.last_seq:
            headers["Last-Event-ID"] = str(self.last_seq)
        return {"params": {"after": self.last_seq} if self.last_seq else {}, "headers": headers}

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self.got_bytes = True
        out: list[dict[str, Any]] = []
        for msg in self._parser.feed(chunk):
            if msg.event == "end":
                out.append({"kind": "end", "task": json.loads(msg.data) if msg.data else None})
                self.done = True
                break
            if not msg.data:
                continue
            try:
                event = json.loads(msg.data)
            except ValueError as exc:
                raise ApiError(0, "invalid_response", f"bad event data: {msg.data[:200]!r}") from exc
            seq = event.get("seq") if isinstance(event, dict) else None
            if isinstance(seq, int):
                if seq <= self.last_seq:  # already seen before a reconnect
                    continue
                self.last_seq = seq
            out.append(event)
        self.got_events = self.got_events or bool(out)
        return out

    def retry_delay(self, err: ApiError) -> float:
        """Seconds to wait before reconnecting; raises `err` when it is time to give up."""
        if not err.retryable:
            raise err
        if self.got_bytes:  # the server is there: not a failure
            self.failures = 0
            # At once after events; a connection that only carried pings waits a little,
            # so a proxy that keeps cutting quiet streams cannot make us spin.
            return 0.0 if self.got_events else STREAM_QUIET_RECONNECT
        self.failures += 1
        if self.failures > STREAM_MAX_RETRIES:
            raise err
        return min(0.2 * 2 ** (self.failures - 1), 2.0)


def _ended() -> ApiError:
    return ApiError(0, "unreachable", "the stream closed before the task ended")


# --- resources ---------------------------------------------------------------------------


class _Resource:
    def __init__(self, send: Send, source: str = "sdk") -> None:
        self._send = send
        self._source = source


class Agents(_Resource):
    """Agents: `GET/POST /agents`, `PUT/GET/PATCH/DELETE /agents/{id or name}`, execute."""

    def list(self, q: str | None = None) -> Any:
        return self._send("GET", f"{API}/agents", params={"q": q}, pick="items")

    def get(self, key: str) -> Any:
        return self._send("GET", f"{API}/agents/{_seg(key)}")

    def create(self, data: dict[str, Any]) -> Any:
        return self._send("POST", f"{API}/agents", json=data)

    def apply(self, data: dict[str, Any]) -> Any:
        """Create or replace the agent named `data["name"]`."""
        return self._send("PUT", f"{API}/agents/{_seg(data['name'])}", json=data)

    def update(self, key: str, changes: dict[str, Any]) -> Any:
        return self._send("PATCH", f"{API}/agents/{_seg(key)}", json=changes)

    def delete(self, key: str) -> Any:
        return self._send("DELETE", f"{API}/agents/{_seg(key)}")

    def execute(self, agent_id: str, body: dict[str, Any]) -> Any:
        """Start a task (Kubiya style): body `{worker_queue_id?, prompt, parameters?}`.

        Answers `{execution_id, status, task}`; `source` defaults to the client's.
        """
        body = {"source": self._source, **body}
        return self._send("POST", f"{API}/agents/{_seg(agent_id)}/execute", json=body)


class Teams(_Resource):
    """Teams: a coordinator agent and members."""

    def list(self) -> Any:
        return self._send("GET", f"{API}/teams", pick="items")

    def get(self, key: str) -> Any:
        return self._send("GET", f"{API}/teams/{_seg(key)}")

    def create(self, data: dict[str, Any]) -> Any:
        return self._send("POST", f"{API}/teams", json=data)

    def execute(self, team: str, body: dict[str, Any]) -> Any:
        """Start a team task; same body and answer as `agents.execute`."""
        body = {"source": self._source, **body}
        return self._send("POST", f"{API}/teams/{_seg(team)}/execute", json=body)


class Queues(_Resource):
    """Worker queues, with their live worker counts."""

    def list(self) -> Any:
        return self._send("GET", f"{API}/worker-queues", pick="items")

    def get(self, key: str) -> Any:
        return self._send("GET", f"{API}/worker-queues/{_seg(key)}")

    def create(self, name: str, description: str = "", environment: str = "default") -> Any:
        body = {"name": name, "description": description, "environment": environment}
        return self._send("POST", f"{API}/worker-queues", json=body)

    def delete(self, key: str) -> Any:
        """Delete a queue (by id or name); 409 `queue_in_use` while tasks on it are unfinished."""
        return self._send("DELETE", f"{API}/worker-queues/{_seg(key)}")


class Workers(_Resource):
    """Live workers."""

    def list(self, queue: str | None = None) -> Any:
        return self._send("GET", f"{API}/workers", params={"queue": queue}, pick="items")


class Executions(_Resource):
    """Tasks ("executions"): create, list, follow, act on."""

    def __init__(
        self, send: Send, stream: Callable[[str, int], Any], source: str, requested_by: str | None = None
    ) -> None:
        super().__init__(send, source)
        self._stream = stream
        self._requested_by = requested_by

    def create(
        self,
        *,
        agent: str | None = None,
        team: str | None = None,
        queue: str | None = None,
        prompt: str,
        parameters: dict[str, Any] | None = None,
        requested_by: str | None = None,
        parent_id: str | None = None,
        lease_token: str | None = None,
    ) -> Any:
        """Create a task for an agent or a team; `source` (and by default `requested_by`) are the client's.

        A worker delegating (`parent_id`) gives its lease token on the parent as `lease_token`."""
        body = {
            "agent": agent,
            "team": team,
            "queue": queue,
            "prompt": prompt,
            "parameters": parameters,
            "source": self._source,
            "requested_by": requested_by or self._requested_by,
            "parent_id": parent_id,
        }
        return self._send("POST", f"{API}/tasks", json=_clean(body), headers=_lease_header(lease_token))

    def list(
        self,
        status: str | list[str] | None = None,
        agent: str | None = None,
        team: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        source: str | None = None,
        q: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Any:
        """One page, newest first: `{"items": [...], "next_cursor": str | None}`."""
        params = {
            "status": status,
            "agent": agent,
            "team": team,
            "queue": queue,
            "type": type,
            "source": source,
            "q": q,
            "limit": limit,
            "cursor": cursor,
        }
        return self._send("GET", f"{API}/tasks", params=params)

    def get(self, id: str) -> Any:
        return self._send("GET", f"{API}/tasks/{_seg(id)}")

    def events(self, id: str, after: int = 0, limit: int | None = None) -> Any:
        """A page of events after seq `after`: `{"items", "last_seq", "status"}`."""
        return self._send("GET", f"{API}/tasks/{_seg(id)}/events", params={"after": after, "limit": limit})

    def cancel(self, id: str) -> Any:
        return self._send("POST", f"{API}/tasks/{_seg(id)}/cancel")

    def retry(self, id: str) -> Any:
        """A new task with the same work, linked by `retry_of`; `source` is the client's."""
        return self._send("POST", f"{API}/tasks/{_seg(id)}/retry", json={"source": self._source})

    def respond(self, id: str, answer: str, lease_token: str | None = None, key: str | None = None) -> Any:
        """Answer the task's pending question; it goes back to pending. With `key` (its
        `pending_input.key`) an answer meant for an earlier question is refused (409). A
        worker passing an answer on to its delegated task gives its lease token on the parent."""
        return self._send(
            "POST",
            f"{API}/tasks/{_seg(id)}/input",
            json={"answer": answer} if key is None else {"answer": answer, "key": key},
            headers=_lease_header(lease_token),
        )

    def artifacts(self, id: str) -> Any:
        return self._send("GET", f"{API}/tasks/{_seg(id)}/artifacts", pick="items")

    def artifact(self, id: str, name: str) -> Any:
        """The artifact's bytes."""
        return self._send("GET", f"{API}/tasks/{_seg(id)}/artifacts/{_seg(name)}", raw=True)

    def stream(self, id: str, after: int = 0) -> Any:
        """Live events after seq `after`, then `{"kind": "end", "task": Task}`; resumes on drops."""
        return self._stream(id, after)


class Keys(_Resource):
    """API keys (admin)."""

    def create(self, name: str, scopes: list[str], queues: list[str] | None = None) -> Any:
        """A new key; the answer's `key` is shown only this once. `queues` binds a worker key."""
        body: dict[str, Any] = {"name": name, "scopes": scopes}
        if queues:
            body["queues"] = queues
        return self._send("POST", f"{API}/keys", json=body)

    def list(self) -> Any:
        return self._send("GET", f"{API}/keys", pick="items")

    def revoke(self, id: str) -> Any:
        return self._send("DELETE", f"{API}/keys/{_seg(id)}")


class Board(_Resource):
    """The Kanban board."""

    def get(self, **filters: Any) -> Any:
        return self._send("GET", f"{API}/board", params=filters)


class WorkerApi(_Resource):
    """The worker protocol (async client only). Every task call carries the lease `token`
    the claim gave (a string, shown nowhere else)."""

    def __init__(self, send: Send, margin: float) -> None:
        super().__init__(send)
        self._margin = margin

    def claim(
        self,
        queue: str,
        worker_id: str,
        max_tasks: int = 1,
        wait_seconds: float = 30.0,
        info: dict[str, Any] | None = None,
    ) -> Any:
        """Long-poll: items `{task, agent, token, lease_seconds, checkpoint}`, [] on timeout."""
        body = {**_clean(info), "worker_id": worker_id, "max_tasks": max_tasks, "wait_seconds": wait_seconds}
        return self._send(
            "POST",
            f"{API}/worker-queues/{_seg(queue)}/claim",
            json=body,
            pick="tasks",
            timeout=wait_seconds + self._margin,
        )

    def heartbeat(self, worker_id: str, queue: str, running: int, tasks: list[dict[str, Any]]) -> Any:
        """Extend every held lease: `{"cancel": [ids], "lost": [ids], "lease_seconds"}`."""
        body = {"queue": queue, "running": running, "tasks": tasks}
        return self._send("POST", f"{API}/workers/{_seg(worker_id)}/heartbeat", json=body)

    def bye(self, worker_id: str) -> Any:
        return self._send("DELETE", f"{API}/workers/{_seg(worker_id)}")

    def _task(self, task_id: str, action: str, body: dict[str, Any]) -> Any:
        if not body.get("events"):
            body.pop("events", None)  # the server refuses an empty batch
        return self._send("POST", f"{API}/tasks/{_seg(task_id)}/{action}", json=body)

    def task_heartbeat(self, task_id: str, token: str) -> Any:
        return self._task(task_id, "heartbeat", {"token": token})

    def post_events(
        self, task_id: str, token: str, events: list[dict[str, Any]], phase: str | None = None
    ) -> Any:
        """Append `[{kind, data}]` (and move the phase): `{"last_seq", "cancel_requested"}`."""
        body: dict[str, Any] = {"token": token, "events": events}
        if phase:
            body["phase"] = phase
        return self._send("POST", f"{API}/tasks/{_seg(task_id)}/events", json=body)

    def request_input(
        self,
        task_id: str,
        token: str,
        question: str,
        choices: list[str] | None = None,
        key: str | None = None,
        checkpoint: Any = None,
        events: list[dict[str, Any]] | None = None,
    ) -> Any:
        body = _clean({"question": question, "choices": choices, "key": key, "checkpoint": checkpoint})
        return self._task(task_id, "request-input", {"token": token, **body, "events": events})

    def complete(
        self,
        task_id: str,
        token: str,
        result: Any,
        usage: dict[str, Any] | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> Any:
        body = {"token": token, "result": result, "events": events}
        if usage is not None:
            body["usage"] = usage
        return self._task(task_id, "complete", body)

    def fail(
        self, task_id: str, token: str, code: str, message: str, events: list[dict[str, Any]] | None = None
    ) -> Any:
        body = {"token": token, "error": {"code": code, "message": message}, "events": events}
        return self._task(task_id, "fail", body)

    def release(self, task_id: str, token: str, events: list[dict[str, Any]] | None = None) -> Any:
        """Hand the task back to the queue (pending)."""
        return self._task(task_id, "release", {"token": token, "events": events})

    def checkpoint(self, task_id: str, token: str, checkpoint: Any) -> Any:
        return self._task(task_id, "checkpoint", {"token": token, "checkpoint": checkpoint})

    def put_artifact(self, task_id: str, token: str, name: str, content: bytes, media_type: str) -> Any:
        path = f"{API}/tasks/{_seg(task_id)}/artifacts/{_seg(name)}"
        return self._send(
            "PUT", path, content=content, headers={"Content-Type": media_type, "X-Lease-Token": token}
        )


def _lease_header(token: str | None) -> dict[str, str] | None:
    return {"X-Lease-Token": token} if token else None


# --- clients -----------------------------------------------------------------------------


class _Base:
    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        timeout: float,
        source: str,
        requested_by: str | None = None,
    ) -> None:
        self.url = (url or os.environ.get("META_AGENT_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("META_AGENT_API_KEY")
        self.timeout = timeout
        self.source = source
        self._headers = {"User-Agent": f"meta-agent-sdk/{__version__}", "Accept": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        send = self._send
        self.agents = Agents(send, source)
        self.teams = Teams(send, source)
        self.queues = Queues(send)
        self.workers = Workers(send)
        self.executions = Executions(send, self._stream, source, requested_by)
        self.keys = Keys(send)
        self.board = Board(send)

    def _send(self, method: str, path: str, **kw: Any) -> Any:
        raise NotImplementedError

    def _stream(self, task_id: str, after: int) -> Any:
        raise NotImplementedError

    def _args(
        self, params: Any, content: Any, json_: Any, headers: Any, timeout: float | None
    ) -> dict[str, Any]:
        kw: dict[str, Any] = {"params": _clean(params), "content": content, "json": json_, "headers": headers}
        if timeout is not None:
            kw["timeout"] = timeout
        return kw

    def _http_options(self) -> dict[str, Any]:
        return {
            "base_url": self.url,
            "headers": self._headers,
            "timeout": self.timeout,
            # Loading the CA bundle costs ~17 ms of CLI start; plain-http URLs never use it
            # (only relative paths are requested and redirects are not followed).
            "verify": self.url.startswith("https://"),
        }

    def _stream_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=STREAM_READ_TIMEOUT)


class ControlPlaneClient(_Base):
    """Blocking client. `url`/`api_key` default to META_AGENT_URL / META_AGENT_API_KEY."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        source: str = "sdk",
        *,
        transport: httpx.BaseTransport | None = None,
        requested_by: str | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout, source, requested_by)
        self._http = httpx.Client(transport=transport, **self._http_options())

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        pick: str | None = None,
        raw: bool = False,
        timeout: float | None = None,
    ) -> Any:
        try:
            resp = self._http.request(method, path, **self._args(params, content, json, headers, timeout))
        except httpx.TransportError as exc:
            raise _transport_error(self.url, exc) from exc
        return _decode(resp, pick, raw)

    def _stream(self, task_id: str, after: int) -> Iterator[dict[str, Any]]:
        state = _StreamState(after)
        path = f"{API}/tasks/{_seg(task_id)}/stream"
        while True:
            try:
                with self._http.stream(
                    "GET", path, timeout=self._stream_timeout(), **state.request()
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        err = _error_from(resp)
                    else:
                        for chunk in resp.iter_bytes():
                            yield from state.feed(chunk)
                            if state.done:
                                return
                        err = _ended()
            except httpx.TransportError as exc:
                err = _transport_error(self.url, exc)
            time.sleep(state.retry_delay(err))

    def health(self) -> dict[str, Any]:
        """`GET /healthz`."""
        return self._send("GET", "/healthz")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncControlPlaneClient(_Base):
    """Asyncio client: every call returns a coroutine; also carries the worker protocol."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        source: str = "sdk",
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        requested_by: str | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout, source, requested_by)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())
        self.worker = WorkerApi(self._send, margin=max(timeout, 5.0))

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        pick: str | None = None,
        raw: bool = False,
        timeout: float | None = None,
    ) -> Any:
        try:
            resp = await self._http.request(
                method, path, **self._args(params, content, json, headers, timeout)
            )
        except httpx.TransportError as exc:
            raise _transport_error(self.url, exc) from exc
        return _decode(resp, pick, raw)

    async def _stream(self, task_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        state = _StreamState(after)
        path = f"{API}/tasks/{_seg(task_id)}/stream"
        while True:
            try:
                async with self._http.stream(
                    "GET", path, timeout=self._stream_timeout(), **state.request()
                ) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        err = _error_from(resp)
                    else:
                        async for chunk in resp.aiter_bytes():
                            for item in state.feed(chunk):
                                yield item
                            if state.done:
                                return
                        err = _ended()
            except httpx.TransportError as exc:
                err = _transport_error(self.url, exc)
            import asyncio  # lazily: the sync CLI never needs it (~10 ms of start)

            await asyncio.sleep(state.retry_delay(err))

    async def health(self) -> dict[str, Any]:
        """`GET /healthz`."""
        return await self._send("GET", "/healthz")

    async def aclose(self) -> None:
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncControlPlaneClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
