# pyright: reportPrivateUsage=false
"""sdk.wire, the SDK's lean HTTP/1.1 client, against a scripted socket server: what it sends,
how it reads each framing, connection reuse, and what it does when a connection breaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from sdk import wire
from sdk.client import ApiError, AsyncControlPlaneClient, ControlPlaneClient
from sdk.resources import Call

NOT_FOUND = b'{"status":404,"code":"task_not_found","detail":"task t9 not found"}'
OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


@dataclass
class Seen:
    conn: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


Reply = Callable[[Seen], bytes | None]  # the bytes to answer with; None: close without answering


@dataclass
class Server:
    """Answers each request with `reply(request)`; records every request and connection."""

    reply: Reply = lambda _: OK
    seen: list[Seen] = field(default_factory=list[Seen])
    connections: int = 0
    sock: socket.socket = field(default_factory=socket.socket)
    got: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def start(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, n: int) -> None:
        with conn, contextlib.suppress(OSError):  # a client that goes away ends its thread
            self._requests(conn, n)

    def _requests(self, conn: socket.socket, n: int) -> None:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
            size = int(headers.get("content-length", "0"))
            while len(buf) < size:
                buf += conn.recv(65536)
            body, buf = buf[:size], buf[size:]
            method, target, _ = line.split(" ")
            seen = Seen(n, method, target, headers, body)
            self.seen.append(seen)
            self.got.set()
            answer = self.reply(seen)
            if answer is None:
                return
            conn.sendall(answer)
            if answer.startswith(b"HTTP/1.0"):
                return  # a 1.0 answer without a length ends with the connection


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.start()
    yield s
    s.sock.close()


def flags(data: object) -> dict[str, object]:
    assert isinstance(data, dict)
    return dict(data)  # type: ignore[arg-type]


def call(method: str, path: str = "/api/v1/x", **kw: object) -> Call[dict[str, object]]:
    return Call(method, path, flags, **kw)  # type: ignore[arg-type]


def test_a_json_call_is_sent_as_httpx_sends_it_and_the_connection_is_reused(server: Server) -> None:
    with ControlPlaneClient(server.url, api_key="k1") as c:
        assert c._pool is not None  # the lean path serves this URL
        body = {"prompt": "héllo", "n": [1, 2]}
        assert c._send(call("POST", json=body, params={"a": "x y", "b": [1, 2], "c": True})) == {"ok": True}
        assert c._send(call("GET", "/api/v1/y")) == {"ok": True}
    first, second = server.seen
    assert server.connections == 1 and first.conn == second.conn == 1
    assert first.method == "POST" and first.target == "/api/v1/x?a=x%20y&b=1&b=2&c=true"
    assert first.body == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-length"] == str(len(first.body))
    assert first.headers["authorization"] == "Bearer k1"
    assert first.headers["host"] == server.url.removeprefix("http://")
    assert second.method == "GET" and second.body == b""


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{"ok\r\n7;x=1\r\n":true}\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0b\r\n{"ok":true}\r\n0\r\nX-T: 1\r\n\r\n',
        b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}',
    ],
    ids=["chunked", "chunked-with-trailer", "length"],
)
def test_each_framing_is_read_in_pieces_and_whole(answer: bytes) -> None:
    whole = wire._Parser().feed(answer)
    assert whole is not None and whole.json() == {"ok": True}
    parser, out = wire._Parser(), None
    for i in range(len(answer)):  # one byte at a time: no framing may be assumed whole
        out = parser.feed(answer[i : i + 1])
        assert out is None or i == len(answer) - 1
    assert out is not None and out.json() == {"ok": True} and parser.keep_alive


def test_an_answer_framed_by_the_close_and_a_refusal_are_read(server: Server) -> None:
    answers = iter(
        [
            b"HTTP/1.1 404 Not Found\r\ncontent-length: %d\r\n\r\n%s" % (len(NOT_FOUND), NOT_FOUND),
            b'HTTP/1.0 200 OK\r\n\r\n{"ok":true}',
        ]
    )

    def reply(_: Seen) -> bytes | None:
        return next(answers)

    server.reply = reply
    with ControlPlaneClient(server.url) as c:
        with pytest.raises(ApiError) as err:
            c._send(call("GET"))
        assert (err.value.status, err.value.code) == (404, "task_not_found")
        assert c._send(call("GET")) == {"ok": True}  # same connection, then closed by the 1.0 answer
    assert server.connections == 1


def test_a_dropped_connection_retries_a_get_once_but_never_a_post(server: Server) -> None:
    drop = {"on": False}

    def reply(seen: Seen) -> bytes | None:
        if drop["on"] and seen.conn == 1:
            return None  # the server read the request and went away without answering
        return OK

    server.reply = reply
    with ControlPlaneClient(server.url) as c:
        c._send(call("GET"))
        drop["on"] = True
        assert c._send(call("GET")) == {"ok": True}  # sent again on a new connection
        assert [s.conn for s in server.seen] == [1, 1, 2]
        drop["on"] = False
        assert c._pool is not None
        c._pool.close()
        server.reply = lambda s: None if s.method == "POST" else OK
        c._send(call("GET"))  # connection 3, kept
        with pytest.raises(ApiError) as err:
            c._send(call("POST", json={"a": 1}))
        assert err.value.code == "unreachable" and err.value.status == 0
    assert [s.method for s in server.seen].count("POST") == 1  # sent once, not again


def test_no_answer_in_time_is_a_timeout_and_no_server_is_unreachable(server: Server) -> None:
    release = threading.Event()

    def slow(_: Seen) -> bytes | None:
        release.wait(10)
        return OK

    server.reply = slow
    with ControlPlaneClient(server.url, timeout=0.3) as c:
        with pytest.raises(ApiError) as err:
            c._send(call("POST", json={}))
        assert (err.value.status, err.value.code) == (0, "timeout")
    release.set()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with ControlPlaneClient(f"http://127.0.0.1:{port}") as c:
        with pytest.raises(ApiError) as err:
            c._send(call("GET"))
        assert err.value.code == "unreachable" and str(port) in err.value.detail


def test_garbage_is_refused_as_unreachable(server: Server) -> None:
    server.reply = lambda _: b"SSH-2.0-OpenSSH\r\n\r\n"
    with ControlPlaneClient(server.url) as c, pytest.raises(ApiError) as err:
        c._send(call("GET"))
    assert err.value.code == "unreachable" and "bad response" in err.value.detail


def test_a_base_url_with_a_path_prefixes_every_call(server: Server) -> None:
    with ControlPlaneClient(server.url + "/meta/") as c:
        c._send(call("GET", "/api/v1/tasks/t1"))
    assert server.seen[0].target == "/meta/api/v1/tasks/t1"


def test_httpx_serves_what_the_lean_path_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    assert wire.for_url("http://user:pw@h:1") is None  # basic auth
    assert wire.for_url("ftp://h") is None
    assert wire.for_url("https://h") == wire.Target("h", 443, True, "h", "")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert ControlPlaneClient("http://h:1")._pool is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("META_AGENT_SDK_HTTPX", "1")
    assert ControlPlaneClient("http://h:1")._pool is None
    monkeypatch.delenv("META_AGENT_SDK_HTTPX")
    assert ControlPlaneClient("http://h:1")._pool is not None
    # A header that cannot go on the wire as it is: httpx gets the call (and refuses it).
    target = wire.for_url("http://h:1")
    assert target is not None
    assert wire.encode_request(target, "GET", "/x", {"X-A": "a\r\nX-Injected: 1"}) is None


async def test_async_reuse_and_a_cancelled_call_does_not_leak_its_answer(server: Server) -> None:
    gate = threading.Event()

    def reply(seen: Seen) -> bytes | None:
        if seen.target.endswith("/slow"):
            gate.wait(10)
            return b'HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{"slow":true}'
        return OK

    server.reply = reply
    async with AsyncControlPlaneClient(server.url) as c:
        assert await c._send(call("GET")) == {"ok": True}
        assert await c._send(call("POST", json={"a": 1})) == {"ok": True}
        assert server.connections == 1
        slow = asyncio.create_task(c._send(call("GET", "/api/v1/slow")))
        await asyncio.wait_for(asyncio.to_thread(server.got.wait), 5)
        while len(server.seen) < 3:  # the slow request has reached the server
            server.got.clear()
            await asyncio.wait_for(asyncio.to_thread(server.got.wait, 5), 6)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        gate.set()
        # The next call must not read the cancelled call's late answer.
        assert await c._send(call("GET")) == {"ok": True}
    assert [s.conn for s in server.seen] == [1, 1, 1, 2]


async def test_async_timeout_and_refusal(server: Server) -> None:
    release = threading.Event()
    server.reply = lambda _: (release.wait(10), OK)[1]
    async with AsyncControlPlaneClient(server.url, timeout=0.3) as c:
        with pytest.raises(ApiError) as err:
            await c._send(call("POST", json={}))
        assert err.value.code == "timeout"
    release.set()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    async with AsyncControlPlaneClient(f"http://127.0.0.1:{port}") as c:
        with pytest.raises(ApiError) as err:
            await c._send(call("GET"))
        assert err.value.code == "unreachable"
