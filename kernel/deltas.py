"""Streamed text handed on in pieces: a model streams a token at a time, and an event per
token would flood the event log, the board and every follower."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["DeltaCoalescer"]


class DeltaCoalescer:
    """Collects text deltas and hands them on in pieces: after `interval` or `size` characters."""

    def __init__(self, emit: Callable[[str], None], interval: float = 0.075, size: int = 160) -> None:
        self._emit = emit
        self._interval = interval
        self._size = size
        self._buf: list[str] = []
        self._chars = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, text: str) -> None:
        if not text:
            return
        self._buf.append(text)
        self._chars += len(text)
        if self._chars >= self._size:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buf:
            text, self._buf, self._chars = "".join(self._buf), [], 0
            self._emit(text)
