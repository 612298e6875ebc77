"""Event batching: a task's events leave in few HTTP calls, in order.

Events are sent ~50 ms after the first one is queued, or at once when 100 (or ~256 KB) are
pending. At the end of a task the worker calls `drain()` and sends the remainder with the
final call (complete / fail / request-input / release), so a short task costs one call.
Only one post is in flight at a time, which is what keeps the order. A phase set with
`set_phase` travels with the next batch (`post(events, phase=...)`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

__all__ = ["EventBatcher"]

log = logging.getLogger(__name__)


class Post(Protocol):
    """Sends one batch of `{kind, data}` events, with the phase to move to if there is one."""

    def __call__(self, events: list[dict[str, Any]], phase: str | None = None) -> Awaitable[object]: ...


def _sized(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    try:
        return data, len(json.dumps(data))
    except (TypeError, ValueError):
        # Better a stringified value in the log than a batch the HTTP layer cannot encode.
        text = json.dumps(data, default=str)
        return json.loads(text), len(text)


class EventBatcher:
    """Buffers `{kind, data}` events for one task and posts them with `post(events)`."""

    def __init__(
        self, post: Post, *, interval: float = 0.05, max_events: int = 100, max_bytes: int = 256_000
    ) -> None:
        self._post = post
        self._interval = interval
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._pending: list[dict[str, Any]] = []
        self._sizes: list[int] = []
        self._bytes = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False
        self._phase: str | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, kind: str, data: dict[str, Any]) -> None:
        """Queue one event (non-blocking); it is posted soon by the background flusher."""
        if self._closed:
            log.debug("event %s after the task ended, dropped", kind)
            return
        data, size = _sized(data)
        self._pending.append({"kind": kind, "data": data})
        self._sizes.append(size)
        self._bytes += size
        if self._loop_task is None:  # started lazily: most no-op tasks never emit anything
            self._loop_task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()
        if len(self._pending) >= self._max_events or self._bytes >= self._max_bytes:
            self._full.set()

    def set_phase(self, phase: str) -> None:
        """Report `phase` with the next batch that leaves (there must be an event to carry it)."""
        self._phase = phase

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._full.is_set() and not self._closed:
                try:
                    await asyncio.wait_for(self._full.wait(), self._interval)
                except TimeoutError:
                    pass
            if self._closed:
                return
            self._wake.clear()
            self._full.clear()
            try:
                await self._flush(background=True)
            except Exception:
                # The poster already retried what can be retried; these events are lost.
                log.warning("dropping a batch of events", exc_info=True)

    def _take(self) -> list[dict[str, Any]]:
        n, size = 0, 0
        for s in self._sizes[: self._max_events]:
            size += s
            n += 1
            if size >= self._max_bytes:
                break
        batch, self._pending, self._sizes = self._pending[:n], self._pending[n:], self._sizes[n:]
        self._bytes -= size
        return batch

    async def flush(self) -> None:
        """Post everything pending now (after any post in flight), in order."""
        await self._flush(background=False)

    async def _flush(self, *, background: bool) -> None:
        async with self._lock:
            # Once drain() has begun, what is left rides on the final call instead.
            while self._pending and not (background and self._closed):
                batch, phase = self._take(), self._phase
                if phase:
                    self._phase = None
                    await self._post(batch, phase=phase)
                else:
                    await self._post(batch)

    async def drain(self) -> list[dict[str, Any]]:
        """Stop the flusher and return what is left, small enough to ride on the final call."""
        self._closed = True
        self._wake.set()
        self._full.set()
        if self._loop_task is not None:
            await self._loop_task
        async with self._lock:
            while len(self._pending) > self._max_events or self._bytes > self._max_bytes:
                await self._post(self._take())
            rest, self._pending, self._sizes, self._bytes = self._pending, [], [], 0
        return rest

    def abandon(self) -> None:
        """Drop everything and stop (the task's lease is gone: no more calls for it)."""
        self._closed = True
        self._pending, self._sizes, self._bytes = [], [], 0
        if self._loop_task is not None:
            self._loop_task.cancel()
