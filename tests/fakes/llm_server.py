"""A fake OpenAI-compatible chat-completions server, on a real socket, scripted per test.

    with FakeLLM() as llm:
        llm.script(text("Looking."), tool_call("bash", {"command": "uname"}), text("Linux."))
        ...  # point litellm at llm.api_base with model "openai/fake" and api_key "sk-test"
        assert llm.requests[1]["messages"][-1]["role"] == "tool"

Each POST /v1/chat/completions takes the next scripted reply (the first whose `when`, if
given, occurs in the request's last message): streamed as SSE
`chat.completion.chunk`s (text deltas; tool calls as a first delta with id/type/name, then
argument pieces; usage in a last chunk with no choices; `data: [DONE]`) or as one JSON body
when the request does not stream; or an error status with an OpenAI-style error body. A
reply may hold its stream open at a `Gate` until the test opens it (or the client goes
away, which `disconnects` counts). Every request body is recorded in `requests`.

Real servers' failures after the status line are scripted too (llama-cpp-python's server
does all of these): `empty()` is 200 then a stream with no chunks; `error_frame(msg)` is
200 then `data: {"error": ...}`; `unfinished(text)` streams text but never a
`finish_reason`; `dropped(text)` sends some text then breaks the connection; `cut(text)`
ends with `finish_reason: length`. `FakeLLM(needs_content=True)` behaves like a chat
template that reads `content` on every message: a request with an assistant message
without a string `content` gets 200 then nothing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

__all__ = [
    "FakeLLM",
    "Gate",
    "Reply",
    "cut",
    "dropped",
    "empty",
    "error",
    "error_frame",
    "text",
    "tool_call",
    "tool_calls",
    "unfinished",
]


class Gate:
    """A point where a streamed reply waits until the test calls `open()`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reached = threading.Event()  # the stream got here (what came before is sent)

    def open(self) -> None:
        self._event.set()

    def wait_reached(self, timeout: float = 10.0) -> None:
        if not self.reached.wait(timeout):
            raise AssertionError("the fake LLM stream never reached its gate")

    async def passed(self, limit: float) -> bool:
        # Runs on the server's loop; a short poll keeps it cancellable when the client leaves.
        self.reached.set()
        deadline = time.monotonic() + limit
        while not self._event.is_set():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


@dataclass
class Reply:
    """One scripted answer: text pieces and/or tool calls, or an error status."""

    pieces: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error_type: str = ""
    error_code: str | None = None
    message: str = ""
    usage: tuple[int, int] = (12, 7)
    gate: Gate | None = None  # the stream holds after the first half of the pieces
    gate_limit: float = 30.0
    when: str | None = None  # only for a request whose last message contains this text
    # How the stream ends: "finish" (normally), "nothing" (200, no chunks at all), "error"
    # (an error frame after the pieces), "no_finish" (no finish_reason), "drop" (the
    # connection breaks after the pieces), "length" (finish_reason: length).
    end: str = "finish"


def text(
    content: str | list[str],
    *,
    usage: tuple[int, int] = (12, 7),
    gate: Gate | None = None,
    when: str | None = None,
) -> Reply:
    """An answer streamed as the given pieces (a string is split into words)."""
    pieces = content if isinstance(content, list) else _words(content)
    return Reply(pieces=pieces, usage=usage, gate=gate, when=when)


def tool_call(
    name: str, arguments: dict[str, Any], call_id: str | None = None, say: str = "", when: str | None = None
) -> Reply:
    return tool_calls([(name, arguments, call_id)], say=say, when=when)


def tool_calls(
    calls: list[tuple[str, dict[str, Any], str | None]], say: str = "", when: str | None = None
) -> Reply:
    """An assistant turn asking for these tool calls (ids default to `call_<n>`)."""
    out = []
    for name, args, call_id in calls:
        out.append({"id": call_id or f"call_{_next_id()}", "name": name, "arguments": json.dumps(args)})
    return Reply(pieces=_words(say) if say else [], calls=out, when=when)


def error(status: int, message: str = "", *, type: str = "", code: str | None = None) -> Reply:
    default = {
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-test."),
        404: ("invalid_request_error", "model_not_found", "The model `fake` does not exist."),
        429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached, slow down."),
        500: ("server_error", None, "The server had an error while processing your request."),
    }.get(status, ("invalid_request_error", None, "error"))
    return Reply(
        status=status,
        error_type=type or default[0],
        error_code=code or default[1],
        message=message or default[2],
    )


def empty() -> Reply:
    """HTTP 200, then the stream ends without a single chunk (the server raised)."""
    return Reply(end="nothing")


def error_frame(message: str, pieces: str = "") -> Reply:
    """HTTP 200, optionally some text, then `data: {"error": {...}}` in the stream."""
    return Reply(pieces=_words(pieces) if pieces else [], end="error", message=message)


def unfinished(content: str) -> Reply:
    """Text that stops without a `finish_reason` (and without usage)."""
    return Reply(pieces=_words(content), end="no_finish")


def dropped(content: str) -> Reply:
    """Some text, then the connection breaks mid-stream."""
    return Reply(pieces=_words(content), end="drop")


def cut(content: str, *, usage: tuple[int, int] = (12, 7)) -> Reply:
    """Text that ends with `finish_reason: length` (the max_tokens limit was hit)."""
    return Reply(pieces=_words(content), end="length", usage=usage)


class _Dropped(Exception):
    """Raised inside a streaming response: uvicorn then aborts the connection."""


_ids = iter(range(1, 1_000_000))


def _next_id() -> int:
    return next(_ids)


def _words(content: str) -> list[str]:
    words = content.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class FakeLLM:
    """The server; use as a context manager (starts on a free port, stops at exit)."""

    model = "fake"

    def __init__(self, *, needs_content: bool = False) -> None:
        self.needs_content = needs_content
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0
        self._lock = threading.Lock()
        self.app = self._build()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.api_base = f"http://127.0.0.1:{self.port}/v1"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake LLM server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def _next(self, body: dict[str, Any]) -> Reply | None:
        messages = body.get("messages") or [{}]
        last = json.dumps(messages[-1].get("content"))
        with self._lock:
            for i, reply in enumerate(self.replies):
                if reply.when is None or reply.when in last:
                    return self.replies.pop(i)
            return None

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Any:
            body = await request.json()
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            if self.needs_content and _lacks_content(body):
                # llama.cpp's chat template fails while rendering, after the 200.
                return StreamingResponse(_nothing(), media_type="text/event-stream")
            reply = self._next(body)
            if reply is None:
                reply = error(400, "the fake LLM has no scripted reply left")
            if reply.status != 200:
                err = {
                    "message": reply.message,
                    "type": reply.error_type,
                    "param": None,
                    "code": reply.error_code,
                }
                return JSONResponse({"error": err}, status_code=reply.status)
            if not body.get("stream"):
                if reply.end == "error":  # what a server says when it need not stream
                    err = {"message": reply.message, "type": "server_error", "param": None, "code": None}
                    return JSONResponse({"error": err}, status_code=500)
                return JSONResponse(_whole(reply, body.get("model", "fake")))
            return StreamingResponse(self._chunks(reply, body), media_type="text/event-stream")

        return app

    async def _chunks(self, reply: Reply, body: dict[str, Any]) -> AsyncIterator[bytes]:
        model = body.get("model", "fake")
        cid = f"chatcmpl-{_next_id()}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
            obj: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage:
                obj["usage"] = usage
            return f"data: {json.dumps(obj)}\n\n".encode()

        try:
            if reply.end == "nothing":
                return
            yield chunk({"role": "assistant", "content": ""})
            half = (len(reply.pieces) + 1) // 2 if reply.gate else len(reply.pieces)
            for piece in reply.pieces[:half]:
                yield chunk({"content": piece})
            if reply.gate and not await reply.gate.passed(reply.gate_limit):
                return
            for piece in reply.pieces[half:]:
                yield chunk({"content": piece})
            if reply.end == "error":
                err = {"message": reply.message, "type": "server_error", "param": None, "code": None}
                yield f"data: {json.dumps({'error': err})}\n\n".encode()
                return
            if reply.end == "drop":
                raise _Dropped("the fake LLM breaks the connection")
            if reply.end == "no_finish":
                yield b"data: [DONE]\n\n"
                return
            for i, call in enumerate(reply.calls):
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["name"], "arguments": ""},
                            }
                        ]
                    }
                )
                args = call["arguments"]
                for start in range(0, len(args), 8):
                    yield chunk(
                        {"tool_calls": [{"index": i, "function": {"arguments": args[start : start + 8]}}]}
                    )
            finish = "length" if reply.end == "length" else "tool_calls" if reply.calls else "stop"
            yield chunk({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                p, c = reply.usage
                yield chunk({}, usage={"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.disconnects += 1
            raise


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


def _lacks_content(body: dict[str, Any]) -> bool:
    return any(
        m.get("role") == "assistant" and not isinstance(m.get("content"), str)
        for m in body.get("messages") or ()
    )


def _whole(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.pieces) or None}
    if reply.calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in reply.calls
        ]
    p, c = reply.usage
    return {
        "id": f"chatcmpl-{_next_id()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.calls else "stop"}
        ],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }


Step = Reply | Callable[[dict[str, Any]], Reply]


class ChatLLM(FakeLLM):
    """The fake provider with steps that may be functions of the request (to read task ids)."""

    def __init__(self, *, needs_content: bool = False) -> None:
        super().__init__(needs_content=needs_content)
        self.steps: list[Step] = []

    def play(self, *steps: Step) -> None:
        with self._lock:
            self.steps.extend(steps)

    def _next(self, body: dict[str, Any]) -> Reply | None:
        with self._lock:
            step = self.steps.pop(0) if self.steps else None
        if step is None or isinstance(step, Reply):
            return step
        return step(body)
