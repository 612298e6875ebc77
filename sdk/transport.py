"""The SDK's wire level: errors, decoding an answer, and the server-sent events parser with
the parser of server-sent events.

httpx and the standard library only (the CLI imports this on every call).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import quote

import httpx

from sdk import wire

API = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8080"


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


def seg(value: object) -> str:
    return quote(str(value), safe="")


def clean(d: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (d or {}).items() if v is not None}


def json_object(value: object) -> dict[str, object] | None:
    """`value` when it is a JSON object (json.loads types its dicts' contents as unknown)."""
    return cast(dict[str, object], value) if isinstance(value, dict) else None


class Answer(Protocol):
    """What is read of a response: an httpx.Response, or sdk.wire's Answer."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def error_from(resp: Answer) -> ApiError:
    status = resp.status_code
    try:
        answer: object = resp.json()
    except ValueError:
        answer = None
    body = json_object(answer)
    if body is not None:
        code = body.get("code") or f"http_{status}"
        detail = body.get("detail") or body.get("title") or resp.reason_phrase
        if not isinstance(detail, str):  # e.g. a bare FastAPI validation list
            detail = json.dumps(detail)
        return ApiError(status, str(code), detail, body)
    text = resp.text.strip()
    return ApiError(status, f"http_{status}", text[:500] or resp.reason_phrase, text or None)


def decode(resp: Answer, raw: bool) -> object:
    """The answer's JSON (None for an empty one), or its bytes with `raw`; ApiError for a 4xx/5xx."""
    if resp.status_code >= 400:
        raise error_from(resp)
    if raw:
        return resp.content
    if resp.status_code == 204 or not resp.content:
        return None
    try:
        return resp.json()
    except ValueError as exc:
        raise ApiError(resp.status_code, "invalid_response", f"not JSON: {resp.text[:200]!r}") from exc


def transport_error(url: str, exc: Exception) -> ApiError:
    """No answer, from httpx or sdk.wire: `timeout` once connected, else `unreachable`."""
    reason = str(exc) or type(exc).__name__
    read_timeout = isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout)
    if read_timeout or isinstance(exc, wire.ReadTimeout):
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
