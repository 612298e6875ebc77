"""cli/http_protocol.py: a response's head waits for its body and both go out in one write."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from cli.http_protocol import HeadHoldingTransport


class Recorder:
    """The transport underneath: records each write (a `send` system call)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


HEAD = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n"


async def test_head_and_body_sent_in_one_turn_go_out_as_one_write() -> None:
    under = Recorder()
    t = HeadHoldingTransport(under, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(HEAD)
    assert under.writes == []
    t.write(b"{}")
    assert under.writes == [HEAD + b"{}"]
    assert t.get_extra_info("peername") == "info:peername"  # the rest is the transport's


async def test_a_head_alone_leaves_at_the_end_of_the_turn_and_interim_answers_at_once() -> None:
    under = Recorder()
    t = HeadHoldingTransport(under, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert under.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    t.write(HEAD)  # a stream's head: its first chunk comes in a later turn
    await asyncio.sleep(0)
    assert under.writes[-1] == HEAD
    t.write(HEAD)
    t.close()  # closing sends what is held first
    assert under.writes[-1] == HEAD and under.closed


async def test_is_closing_asked_per_request_is_the_transports_own() -> None:
    looked_up: list[str] = []

    class Counting(HeadHoldingTransport):
        def __getattr__(self, name: str) -> Any:
            looked_up.append(name)
            return super().__getattr__(name)

    under = Recorder()
    t = Counting(under, asyncio.get_running_loop())  # type: ignore[arg-type]
    assert t.is_closing() is False
    under.close()
    assert t.is_closing() is True
    assert looked_up == []  # uvicorn asks it two or three times a request
    assert t.get_extra_info("x") == "info:x" and looked_up == ["get_extra_info"]


def first_read(port: int) -> tuple[bytes, bytes]:
    """A raw GET /healthz: the head and the body bytes of the first read."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
        head, _, body = s.recv(65536).partition(b"\r\n\r\n")
    return head, body
