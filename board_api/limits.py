"""Bounds on long-lived connections (SSE streams, claim long-polls) per API key.

One key (or, on an open server, everyone) may hold at most `per_key` at once; the next gets
429 problem+json. A slot is held by the response object itself (`LimitedStream`), so it is
released however the stream ends: finished, client gone, or server shutting down.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from kernel import errors
from store.auth import Principal


class ConnectionLimiter:
    def __init__(self, per_key: int, *, what: str | None = None) -> None:
        self.per_key = per_key
        self.what = what or f"this key already holds {per_key} open streams or long-polls; close some first"
        self.open: dict[str, int] = defaultdict(int)

    def acquire(self, who: Principal) -> Callable[[], None]:
        """Take a slot for `who` or raise TooMany; returns the (idempotent) release."""
        ident = who.key_id or who.name
        if self.open[ident] >= self.per_key:
            raise errors.TooMany(self.what, code="too_many_streams")
        self.open[ident] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open[ident] -= 1
                if self.open[ident] <= 0:
                    self.open.pop(ident, None)

        return release

    @contextlib.contextmanager
    def slot(self, who: Principal) -> Generator[None]:
        release = self.acquire(who)
        try:
            yield
        finally:
            release()


class LimitedStream(StreamingResponse):
    """A streaming response that gives its connection slot back when it ends."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None], **kw: Any) -> None:
        super().__init__(content, **kw)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
