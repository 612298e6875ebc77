"""Python SDK for the meta-agent control plane, sync and async, built on httpx.

    from sdk.client import ControlPlaneClient
    with ControlPlaneClient() as c:
        task = c.executions.create(agent="k8s-health", prompt="check the cluster")
        for event in c.executions.stream(task.id):  # EventOut items, then a StreamEnd
            print(event.kind)

Kubiya-style code runs as it is (`from sdk import ControlPlaneClient`)::

    client = ControlPlaneClient(api_key=..., base_url="http://127.0.0.1:8080")
    result = client.agents.execute(agent_id, {"worker_queue_id": queue_id, "prompt": "..."})
    print(result.get("execution_id"))   # the models also read like the JSON dicts they came from

Every call answers the pydantic model of `sdk.schemas` that its route serves (`TaskOut`,
`list[AgentOut]`, ...; None for a 204). Each resource (`sdk.resources`) is written once: the
sync client's methods return the answer, the async client's a coroutine of it, so
``c.agents.list()`` and ``await ac.agents.list()`` share one implementation. Only
``executions.stream`` differs (an iterator, or an async iterator).

Errors::

    ApiError                  .status  .code  .detail  .body
      status 4xx / 5xx        the control plane's problem+json answer; ``code`` is its stable code
      status 0, "unreachable" no connection (or it dropped)
      status 0, "timeout"     connected, but no answer in time
      "invalid_response"      an answer that is not the route's model

This module must import fast (the CLI's list commands use it): httpx, pydantic and the
standard library only, never litellm, fastapi, sqlalchemy or the store.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from kernel import __version__
from sdk import wire
from sdk.audit import Audit
from sdk.prereq_api import Prerequisites
from sdk.resources import (
    Agents,
    Async,
    Blocking,
    Board,
    Call,
    Executions,
    Keys,
    Queues,
    StreamItem,
    Teams,
    WorkerApi,
    Workers,
)
from sdk.schemas import EventOut, StreamEnd, TaskOut
from sdk.secret_api import Secrets
from sdk.source_api import Hooks, Schedules
from sdk.transport import (
    API,
    DEFAULT_URL,
    Answer,
    ApiError,
    SSEMessage,
    SSEParser,
    clean,
    decode,
    error_from,
    json_object,
    seg,
    transport_error,
)

__all__ = [
    "STREAM_QUIET_RECONNECT",
    "ApiError",
    "AsyncControlPlaneClient",
    "ControlPlaneClient",
    "SSEMessage",
    "SSEParser",
    "StreamItem",
    "WorkerApi",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# A live stream may be quiet for long; the server pings every ~15 s, so a longer silence
# means the connection is dead and we reconnect.
STREAM_READ_TIMEOUT = 60.0
STREAM_MAX_RETRIES = 10
STREAM_QUIET_RECONNECT = 0.5


# --- streams: resume after drops ------------------------------------------------------


def _stream_item(model: type[M], data: str) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise ApiError(0, "invalid_response", f"bad event data: {data[:200]!r}") from exc


class StreamState:
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

    def feed(self, chunk: bytes) -> list[StreamItem]:
        self.got_bytes = True
        out: list[StreamItem] = []
        for msg in self._parser.feed(chunk):
            if msg.event == "end":
                # The server sends the task; a stream cut short of it ends without one.
                task = _stream_item(TaskOut, msg.data) if msg.data.strip() not in ("", "null") else None
                out.append(StreamEnd(task=task))
                self.done = True
                break
            if not msg.data:
                continue
            event = _stream_item(EventOut, msg.data)
            if event.seq <= self.last_seq:  # already seen before a reconnect
                continue
            self.last_seq = event.seq
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


def stream_ended() -> ApiError:
    return ApiError(0, "unreachable", "the stream closed before the task ended")


# --- clients ---------------------------------------------------------------------------


def _parse(call: Call[T], resp: Answer) -> T:
    data = decode(resp, call.raw)
    try:
        return call.parse(data)
    except ValidationError as exc:
        # An answer that is not the route's model (a proxy's page, another version): one error
        # type. Not JSON at all: said as `decode` says it (a call read from its bytes gets here).
        if call.raw and exc.errors()[0]["type"] == "json_invalid":
            raise ApiError(resp.status_code, "invalid_response", f"not JSON: {resp.text[:200]!r}") from exc
        raise ApiError(resp.status_code, "invalid_response", f"{call.method} {call.path}: {exc}") from exc


def _one_url(url: str | None, base_url: str | None) -> str | None:
    """`url`, or `base_url` (the keyword Kubiya's SDK and most HTTP clients use): either works."""
    if url and base_url and url.rstrip("/") != base_url.rstrip("/"):
        raise TypeError(f"give url or base_url, not two different ones ({url!r}, {base_url!r})")
    return url or base_url


class _Base:
    def __init__(self, url: str | None, api_key: str | None, timeout: float, source: str) -> None:
        self.url = (url or os.environ.get("META_AGENT_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("META_AGENT_API_KEY")
        self.timeout = timeout
        self.source = source
        self._headers = {"User-Agent": f"meta-agent-sdk/{__version__}", "Accept": "application/json"}
        # The surface this client speaks for (cli, mcp, slack...), for the audit log.
        self._headers["X-Meta-Agent-Source"] = source
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    def _args(self, call: Call[Any]) -> dict[str, Any]:
        params = clean(dict(call.params)) if call.params else {}
        kw: dict[str, Any] = {
            "params": params,
            "content": call.content,
            "json": call.json,
            "headers": call.headers,
        }
        if call.timeout is not None:
            kw["timeout"] = call.timeout
        return kw

    def _lean_target(self, transport: object) -> wire.Target | None:
        """Where sdk.wire may send the plain calls; None: httpx sends everything (a test's
        transport, a proxy in the environment, META_AGENT_SDK_HTTPX=1)."""
        if transport is not None or os.environ.get("META_AGENT_SDK_HTTPX", "") not in ("", "0"):
            return None
        return wire.for_url(self.url)

    def _encode(self, target: wire.Target, call: Call[Any]) -> bytes | None:
        headers = {**self._headers, **call.headers} if call.headers else self._headers
        params = clean(dict(call.params)) if call.params else None
        return wire.encode_request(
            target, call.method, call.path, headers, params=params, json_body=call.json, content=call.content
        )

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
    """Blocking client. `url` (or `base_url`) and `api_key` default to META_AGENT_URL /
    META_AGENT_API_KEY."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        source: str = "sdk",
        *,
        transport: httpx.BaseTransport | None = None,
        requested_by: str | None = None,
        base_url: str | None = None,
    ) -> None:
        super().__init__(_one_url(url, base_url), api_key, timeout, source)
        self._http = httpx.Client(transport=transport, **self._http_options())
        target = self._lean_target(transport)
        self._pool = wire.SyncPool(target) if target is not None else None
        send = self._send
        self.agents = Agents[Blocking](send, source)
        self.teams = Teams[Blocking](send, source)
        self.queues = Queues[Blocking](send)
        self.workers = Workers[Blocking](send)
        self.executions = Executions[Blocking](send, self._stream, source, requested_by)
        self.keys = Keys[Blocking](send)
        self.hooks = Hooks[Blocking](send)
        self.board = Board[Blocking](send)
        self.schedules = Schedules[Blocking](send)
        self.secrets = Secrets[Blocking](send)
        self.prerequisites = Prerequisites[Blocking](send)
        self.audit = Audit[Blocking](send)

    def _send(self, call: Call[T]) -> T:
        pool = self._pool
        raw = self._encode(pool.target, call) if pool is not None else None
        if pool is not None and raw is not None:
            try:
                answer = pool.request(call.method, raw, call.timeout or self.timeout)
            except (OSError, TimeoutError) as exc:
                raise transport_error(self.url, exc) from exc
            return _parse(call, answer)
        try:
            resp = self._http.request(call.method, call.path, **self._args(call))
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc
        return _parse(call, resp)

    def _stream(self, task_id: str, after: int) -> Iterator[StreamItem]:
        state = StreamState(after)
        path = f"{API}/tasks/{seg(task_id)}/stream"
        while True:
            try:
                with self._http.stream(
                    "GET", path, timeout=self._stream_timeout(), **state.request()
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        err = error_from(resp)
                    else:
                        for chunk in resp.iter_bytes():
                            yield from state.feed(chunk)
                            if state.done:
                                return
                        err = stream_ended()
            except httpx.TransportError as exc:
                err = transport_error(self.url, exc)
            time.sleep(state.retry_delay(err))

    def health(self) -> dict[str, str]:
        """`GET /healthz`."""
        return self._send(Call("GET", "/healthz", _health))

    def download(self, path: str, params: dict[str, Any] | None = None) -> Iterator[bytes]:
        """The body of a streamed GET (an export) in chunks, never all in memory."""
        try:
            with self._http.stream("GET", path, params=clean(params), timeout=self._stream_timeout()) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise error_from(resp)
                yield from resp.iter_bytes()
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
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
        base_url: str | None = None,
    ) -> None:
        super().__init__(_one_url(url, base_url), api_key, timeout, source)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())
        target = self._lean_target(transport)
        self._pool = wire.AsyncPool(target) if target is not None else None
        send = self._send
        self.agents = Agents[Async](send, source)
        self.teams = Teams[Async](send, source)
        self.queues = Queues[Async](send)
        self.workers = Workers[Async](send)
        self.executions = Executions[Async](send, self._stream, source, requested_by)
        self.keys = Keys[Async](send)
        self.hooks = Hooks[Async](send)
        self.board = Board[Async](send)
        self.schedules = Schedules[Async](send)
        self.secrets = Secrets[Async](send)
        self.prerequisites = Prerequisites[Async](send)
        self.audit = Audit[Async](send)
        self.worker = WorkerApi[Async](send, margin=max(timeout, 5.0))

    async def _send(self, call: Call[T]) -> T:
        pool = self._pool
        raw = self._encode(pool.target, call) if pool is not None else None
        if pool is not None and raw is not None:
            try:
                answer = await pool.request(call.method, raw, call.timeout or self.timeout)
            except (OSError, TimeoutError) as exc:
                raise transport_error(self.url, exc) from exc
            return _parse(call, answer)
        try:
            resp = await self._http.request(call.method, call.path, **self._args(call))
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc
        return _parse(call, resp)

    async def _stream(self, task_id: str, after: int) -> AsyncGenerator[StreamItem]:
        state = StreamState(after)
        path = f"{API}/tasks/{seg(task_id)}/stream"
        while True:
            try:
                async with self._http.stream(
                    "GET", path, timeout=self._stream_timeout(), **state.request()
                ) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        err = error_from(resp)
                    else:
                        async for chunk in resp.aiter_bytes():
                            for item in state.feed(chunk):
                                yield item
                            if state.done:
                                return
                        err = stream_ended()
            except httpx.TransportError as exc:
                err = transport_error(self.url, exc)
            import asyncio  # lazily: the sync CLI never needs it (~10 ms of start)

            await asyncio.sleep(state.retry_delay(err))

    async def health(self) -> dict[str, str]:
        """`GET /healthz`."""
        return await self._send(Call("GET", "/healthz", _health))

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncControlPlaneClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _health(data: object) -> dict[str, str]:
    return {k: str(v) for k, v in (json_object(data) or {}).items()}
