"""A lean HTTP/1.1 keep-alive client for the SDK's plain calls.

Every task costs a client one call (create) and a worker about one (exchange); through
httpx + httpcore + h11 (+ anyio for asyncio) such a call cost the caller ~0.7-1 ms of CPU,
most of a worker's time per task and more than the control plane's own share of a task
(profiled under issue #15). This module sends the same request with the standard library:
one `sendall`/`write` of the whole request, an incremental parse of the answer, connections
kept alive and reused.

It serves only what the SDK's JSON calls need: no redirects, no proxies, no compression,
no streaming (the SSE streams and downloads stay on httpx). `for_url` says whether a base
URL can be served (http or https, no proxy in the environment); the clients fall back to
httpx otherwise, or when a test hands them an httpx transport.

Retries: a request that fails on a reused connection before any answer arrived (the server
closed it while idle) is sent again on a new one only when its method is idempotent; a POST
is never sent twice. Idle connections are dropped after IDLE_SECONDS, before the server's
keep-alive timeout (uvicorn's default: 5 s) closes them under us.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit

__all__ = [
    "Answer",
    "AsyncPool",
    "ConnectFailed",
    "Dropped",
    "ReadTimeout",
    "SyncPool",
    "Target",
    "encode_request",
    "for_url",
]

IDLE_SECONDS = 4.0
MAX_HEAD = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy")


class ConnectFailed(OSError):
    """No connection (refused, unresolvable, connect timeout): nothing was sent."""


class Dropped(OSError):
    """The connection broke before the whole answer came."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered  # some of the answer had arrived


class ReadTimeout(TimeoutError):
    """Connected and sent, but no whole answer in time."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls: bool
    host_header: str
    prefix: str = ""  # a base URL's path ("http://proxy/meta"): requests go below it

    def ssl_context(self) -> ssl.SSLContext | None:
        """For https, made on the first connection (loading the CA bundle costs ~17 ms)."""
        if not self.tls:
            return None
        return _ssl_context()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    import httpx  # the same trust store and settings as the httpx path

    return httpx.create_ssl_context()


def for_url(url: str) -> Target | None:
    """The target for `url`, or None when httpx must serve it (a proxy, another scheme)."""
    if any(os.environ.get(v) or os.environ.get(v.upper()) for v in _PROXY_VARS):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return None
    if parts.username or parts.password:  # httpx turns those into basic auth
        return None
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        return None
    return Target(parts.hostname, port, tls, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"))


def _value(v: object) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def encode_request(
    target: Target,
    method: str,
    path: str,
    headers: Mapping[str, str],
    *,
    params: Mapping[str, object] | None = None,
    json_body: object = None,
    content: bytes | None = None,
) -> bytes | None:
    """The request's bytes; None when a header could not be sent as it is (httpx decides)."""
    path = target.prefix + path
    if params:
        pairs: list[tuple[str, str]] = []
        for k, v in params.items():
            items: Sequence[object] = cast(Sequence[object], v) if isinstance(v, list | tuple) else [v]
            pairs.extend((k, _value(item)) for item in items)
        path = f"{path}?{urlencode(pairs, quote_via=quote)}"
    body = b""
    extra: dict[str, str] = {}
    if content is not None:
        body = content
    elif json_body is not None:
        # httpx's encoding, so both paths send the same bytes.
        body = json.dumps(json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        extra["Content-Type"] = "application/json"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {target.host_header}"]
    for k, v in {**headers, **extra}.items():
        if "\r" in k or "\n" in k or "\r" in v or "\n" in v or ":" in k:
            return None
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        return None
    return head + body


@dataclass
class Answer:
    """What the SDK reads of a response (the subset of httpx.Response it uses)."""

    status_code: int
    reason_phrase: str
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass
class _Parser:
    """An answer's bytes in, an Answer out once whole (Content-Length, chunked, or close)."""

    head_only: bool = False
    buf: bytearray = field(default_factory=bytearray)
    answer: Answer | None = None
    need: int = -1  # body bytes still due; -1: not known yet
    chunked: bool = False
    until_close: bool = False
    keep_alive: bool = True
    chunks: list[bytes] = field(default_factory=list[bytes])

    def feed(self, data: bytes) -> Answer | None:
        """The whole answer once `data` completes it, else None; ValueError when malformed."""
        self.buf += data
        if self.answer is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    raise ValueError("response head too large")
                return None
            self._head(bytes(self.buf[:end]).decode("latin-1"))
            del self.buf[: end + 4]
        if self.chunked:
            return self._chunks()
        if self.until_close:
            return None
        if len(self.buf) < self.need:
            return None
        return self._done(bytes(self.buf[: self.need]))

    def eof(self) -> Answer | None:
        """The connection closed: the answer when it was framed by the close."""
        if self.answer is not None and self.until_close:
            self.keep_alive = False
            return self._done(bytes(self.buf))
        return None

    def _head(self, head: str) -> None:
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ValueError(f"not an HTTP/1.x response: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        status = int(code)
        self.answer = Answer(status, reason, headers, b"")
        conn = headers.get("connection", "").lower()
        self.keep_alive = version == "HTTP/1.1" and "close" not in conn
        if self.head_only or status in (204, 304) or 100 <= status < 200:
            self.need = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.chunked = True
        elif "content-length" in headers:
            self.need = int(headers["content-length"])
        else:
            self.until_close = True

    def _chunks(self) -> Answer | None:
        while True:
            line_end = self.buf.find(b"\r\n")
            if line_end < 0:
                return None
            size = int(bytes(self.buf[:line_end]).split(b";")[0], 16)
            start = line_end + 2
            if size == 0:  # the last chunk: then trailers (ignored) and an empty line
                if not self.buf.startswith(b"\r\n", start) and self.buf.find(b"\r\n\r\n", line_end) < 0:
                    return None
                return self._done(b"".join(self.chunks))
            if len(self.buf) < start + size + 2:
                return None
            self.chunks.append(bytes(self.buf[start : start + size]))
            del self.buf[: start + size + 2]

    def _done(self, body: bytes) -> Answer:
        assert self.answer is not None
        self.answer.content = body
        return self.answer


# --- asyncio --------------------------------------------------------------------------


class _AsyncConn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used_at = time.monotonic()
        self._parser = _Parser()
        self._waiter: asyncio.Future[Answer] | None = None
        self._got = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: this connection cannot be trusted
            return
        self._got = True
        try:
            answer = self._parser.feed(data)
        except ValueError as exc:
            waiter.set_exception(Dropped(f"bad response: {exc}", answered=True))
            self.close()
            return
        if answer is not None:
            waiter.set_result(answer)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            answer = self._parser.eof()
            if answer is not None:
                waiter.set_result(answer)
            else:
                reason = str(exc) if exc else "the server closed the connection"
                waiter.set_exception(Dropped(reason, answered=self._got))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def send(self, raw: bytes, timeout: float, head_only: bool) -> Answer:
        loop = asyncio.get_running_loop()
        self._parser, self._got = _Parser(head_only=head_only), False
        waiter = self._waiter = loop.create_future()
        assert self.transport is not None
        self.transport.write(raw)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            answer = await waiter
        except BaseException:
            self.close()  # a late answer must not be read as the next request's
            raise
        finally:
            timer.cancel()
            self._waiter = None
        if not self._parser.keep_alive:
            self.close()
        self.used_at = time.monotonic()
        return answer


def _expire(waiter: asyncio.Future[Answer]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout("no answer in time"))


class AsyncPool:
    """Keep-alive connections to one target, for one event loop at a time."""

    def __init__(self, target: Target, max_connections: int = 100) -> None:
        self.target = target
        self._idle: list[_AsyncConn] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._max = max_connections

    async def request(self, method: str, raw: bytes, timeout: float) -> Answer:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._slots is None:
            # Connections belong to the loop that made them; a new loop starts afresh.
            self._idle, self._loop, self._slots = [], loop, asyncio.Semaphore(self._max)
        async with self._slots:
            while True:
                conn, reused = self._take(), True
                if conn is None:
                    conn, reused = await self._connect(loop, timeout), False
                try:
                    answer = await conn.send(raw, timeout, method == "HEAD")
                except Dropped as exc:
                    if reused and not exc.answered and method in IDEMPOTENT:
                        continue  # closed while idle: once more, on a new connection
                    raise
                if not conn.closed:
                    self._idle.append(conn)
                return answer

    def _take(self) -> _AsyncConn | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.used_at < IDLE_SECONDS:
                return conn
            conn.close()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, timeout: float) -> _AsyncConn:
        t = self.target
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(
                    _AsyncConn,
                    t.host,
                    t.port,
                    ssl=(tls := t.ssl_context()),
                    server_hostname=t.host if tls else None,
                ),
                timeout,
            )
        except TimeoutError as exc:
            raise ConnectFailed(f"connect timed out after {timeout:g} s") from exc
        except OSError as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        # uvloop may call connection_made only after create_connection has returned.
        conn.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle = []


# --- blocking -------------------------------------------------------------------------


class _SyncConn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.used_at = time.monotonic()

    def stale(self) -> bool:
        """Closed by the server while idle (readable with nothing asked), or idle too long."""
        if time.monotonic() - self.used_at >= IDLE_SECONDS:
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def send(self, raw: bytes, timeout: float, head_only: bool) -> tuple[Answer, bool]:
        parser = _Parser(head_only=head_only)
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(raw)
        except OSError as exc:
            raise Dropped(str(exc) or type(exc).__name__, answered=False) from exc
        got = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReadTimeout("no answer in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError as exc:
                raise ReadTimeout("no answer in time") from exc
            except OSError as exc:
                raise Dropped(str(exc) or type(exc).__name__, answered=got) from exc
            if not data:
                answer = parser.eof()
                if answer is None:
                    raise Dropped("the server closed the connection", answered=got)
                return answer, False
            got = True
            try:
                answer = parser.feed(data)
            except ValueError as exc:
                raise Dropped(f"bad response: {exc}", answered=True) from exc
            if answer is not None:
                self.used_at = time.monotonic()
                return answer, parser.keep_alive

    def close(self) -> None:
        self.sock.close()


class SyncPool:
    """Keep-alive connections to one target; safe to share between threads."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._idle: list[_SyncConn] = []
        self._lock = threading.Lock()

    def request(self, method: str, raw: bytes, timeout: float) -> Answer:
        while True:
            conn = self._take()
            reused = conn is not None
            if conn is None:
                conn = self._connect(timeout)
            try:
                answer, keep = conn.send(raw, timeout, method == "HEAD")
            except Dropped as exc:
                conn.close()
                if reused and not exc.answered and method in IDEMPOTENT:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if keep:
                with self._lock:
                    self._idle.append(conn)
            else:
                conn.close()
            return answer

    def _take(self) -> _SyncConn | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if not conn.stale():
                return conn
            conn.close()

    def _connect(self, timeout: float) -> _SyncConn:
        t = self.target
        try:
            sock = socket.create_connection((t.host, t.port), timeout=timeout)
        except TimeoutError as exc:
            raise ConnectFailed(f"connect timed out after {timeout:g} s") from exc
        except OSError as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = t.ssl_context()
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=t.host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        return _SyncConn(sock)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
