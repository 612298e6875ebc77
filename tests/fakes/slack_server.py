"""A fake Slack: the Web API at `/api/<method>` and a Socket Mode websocket at `/ws`, on a
real socket (aiohttp in its own thread), answering in Slack's wire format.

    with FakeSlack() as slack:
        settings: slack_api_base=slack.api_base, slack_bot_token="xoxb-test", ...
        slack.fail("chat.postMessage", "ratelimited", status=429, retry_after=1)   # next call
        ...
        slack.calls_to("chat.update")          # every recorded call: Call(method, args, at)
        slack.socket_send("events_api", body)  # Socket Mode: an envelope; `acks` records replies

Every call is recorded with its arguments (from JSON, form or query). `chat.postMessage`
returns a fresh `ts`; messages are kept per channel, so `conversations.replies` and
`conversations.history` (with their metadata) and `chat.update` behave as in Slack. A channel
may be named (`#ops`, listed by `conversations.list`): a post to a name lands in its id's
channel and answers with the id; an unknown name is `channel_not_found`. Files: `files.getUploadURLExternal` hands
out an upload URL on this server, the bytes are kept, `files.completeUploadExternal` shares
them. `apps.connections.open` returns this server's ws:// URL, which sends `hello` first.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["Call", "FakeSlack"]

TEAM, BOT_USER, BOT_ID = "T1", "UBOT", "BBOT"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    token: str | None = None
    result: dict[str, Any] = field(default_factory=dict)  # what the fake answered


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int | None
    times: int


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, list[dict[str, Any]]] = {}  # channel -> messages
        self.channels: dict[str, str] = {"ops": "C0OPS", "general": "C0GENERAL"}  # name -> id
        self.uploads: dict[str, bytes] = {}
        self.acks: list[dict[str, Any]] = []  # what the Socket Mode client sent back
        self.socket_connects = 0
        self._failures: dict[str, list[_Failure]] = {}
        self._lock = threading.Lock()
        self._last_ts = 0.0
        self._ids = itertools.count(1)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_base = self.url + "/api/"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    # --- test side ---------------------------------------------------------------------------

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        if not self._started.wait(10):
            self._sock.close()
            raise RuntimeError("the fake Slack did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._sock.close()

    def fail(
        self, method: str, error: str, *, status: int = 200, retry_after: int | None = None, times: int = 1
    ) -> None:
        """The next `times` calls of `method` fail with `error` (429 + Retry-After for rate limits)."""
        with self._lock:
            self._failures.setdefault(method, []).append(_Failure(error, status, retry_after, times))

    def calls_to(self, *methods: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method in methods]

    def posts(self, channel: str | None = None, thread_ts: str | None = None) -> list[Call]:
        """chat.postMessage calls (optionally in one channel/thread)."""
        return [
            c
            for c in self.calls_to("chat.postMessage")
            if (channel is None or c.args.get("channel") == channel)
            and (thread_ts is None or c.args.get("thread_ts") == thread_ts)
        ]

    def socket_send(self, kind: str, payload: dict[str, Any], retry_attempt: int = 0) -> str:
        """Send a Socket Mode envelope (events_api, interactive, slash_commands); its id."""
        envelope_id = f"env-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        assert self._loop is not None and self._outbox is not None
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, envelope)
        return envelope_id

    # --- server side --------------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._outbox = asyncio.Queue()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/ws", self._ws)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        site = web.SockSite(runner, self._sock)
        await site.start()
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                form = await request.post()
                args.update({k: v for k, v in form.items() if isinstance(v, str)})
        for key in ("blocks", "metadata", "files", "prompts"):  # JSON-encoded in form bodies
            if isinstance(args.get(key), str):
                try:
                    args[key] = json.loads(args[key])
                except ValueError:
                    pass
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        call = Call(method, args, token=auth.removeprefix("Bearer ") or None)
        with self._lock:
            self.calls.append(call)
            failures = self._failures.get(method) or []
            failure = failures[0] if failures else None
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    failures.pop(0)
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            return web.json_response(
                {"ok": False, "error": failure.error}, status=failure.status, headers=headers
            )
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        body = handler(args) if handler else {"ok": False, "error": "unknown_method"}
        call.result = body
        return web.json_response(body)

    def _new_ts(self) -> str:
        """The wall-clock time, as Slack's are (`oldest` filters compare them), made unique."""
        with self._lock:
            self._last_ts = max(time.time(), self._last_ts + 0.001)
            return f"{self._last_ts:.6f}"

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "meta-agent",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        if channel.startswith("#"):  # Slack takes a channel's name too, and answers with its id
            if channel[1:] not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            channel = self.channels[channel[1:]]
        message = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "ts": self._new_ts(),
            "text": args.get("text", ""),
            "blocks": args.get("blocks") or [],
        }
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        if args.get("metadata"):
            message["metadata"] = args["metadata"]
        with self._lock:
            self.messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        with self._lock:
            message = self._find(channel, ts)
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message["text"] = args.get("text", message["text"])
            if "blocks" in args:
                message["blocks"] = args.get("blocks") or []
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self._new_ts()}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        with self._lock:
            thread = [
                dict(m) for m in self.messages.get(channel, []) if m["ts"] == ts or m.get("thread_ts") == ts
            ]
        return {"ok": True, "messages": thread, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages, newest first, after `oldest`; metadata only when asked for."""
        channel, oldest = str(args.get("channel")), float(args.get("oldest") or 0)
        if channel.startswith("#"):
            return {"ok": False, "error": "channel_not_found"}  # the real one takes ids only
        with self._lock:
            top = [
                dict(m)
                for m in self.messages.get(channel, [])
                if "thread_ts" not in m and float(m["ts"]) > oldest
            ]
        if str(args.get("include_all_metadata")).lower() not in ("true", "1"):
            for m in top:
                m.pop("metadata", None)
        return {
            "ok": True,
            "messages": top[::-1],
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    def _m_conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        channels = [{"id": cid, "name": name, "is_channel": True} for name, cid in self.channels.items()]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}

    def _ok(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    _m_reactions_add = _m_reactions_remove = _ok
    _m_assistant_threads_setStatus = _m_assistant_threads_setSuggestedPrompts = _ok
    _m_assistant_threads_setTitle = _ok

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user"))
        return {"ok": True, "user": {"id": user, "name": user.lower(), "real_name": f"User {user}"}}

    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids)}"
        return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        data = await request.read()
        with self._lock:
            self.calls.append(Call("upload", {"file_id": file_id, "size": len(data)}))
            self.uploads[file_id] = data
        return web.Response(text=f"OK - {len(data)}")

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files") or []
        if isinstance(files, str):
            files = json.loads(files)
        with self._lock:
            missing = [f["id"] for f in files if f["id"] not in self.uploads]
        if missing:
            return {"ok": False, "error": "file_not_found"}
        return {
            "ok": True,
            "files": [{"id": f["id"], "title": f.get("title"), "name": f.get("title")} for f in files],
        }

    def _m_chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._m_chat_postMessage({**args, "text": args.get("markdown_text", "")})

    def _m_chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}

    _m_chat_stopStream = _m_chat_appendStream

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/ws"}

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._lock:
            self.socket_connects += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "fake"},
                "connection_info": {"app_id": "A1"},
            }
        )
        assert self._outbox is not None

        async def sender() -> None:
            while True:
                envelope = await self._outbox.get()  # type: ignore[union-attr]
                await ws.send_json(envelope)

        sending = asyncio.create_task(sender())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    with self._lock:
                        self.acks.append(json.loads(msg.data))
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            sending.cancel()
        return ws
