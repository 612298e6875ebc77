"""The worker's running tasks' events, sent together (POST /worker-queues/{queue}/events).

Each task keeps its own EventBatcher (worker.batcher: order, size caps, one post in flight
per task). Their posts come here instead of each making an HTTP call: whatever is queued
leaves in one call, and posts that arrive while a call is in flight wait for it and leave
together in the next one. An idle worker's single task pays nothing extra (one post, one
call); a worker streaming 50 tasks makes one call per round instead of 50, which is most of
what a control plane spends on streaming (`make bench-stream`).

Each task's batch is answered on its own: a refused one raises ApiError for that task only
(409 `stale_lease`: the task is no longer this worker's). A control plane without the route
(older than this worker) gets each task's post on its own route, as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sdk.client import ApiError, WorkerApi
from sdk.exchange import ProgressResult
from sdk.resources import Async
from sdk.schemas import EventsOut

__all__ = ["ProgressPipe"]

log = logging.getLogger(__name__)

MAX_ITEMS = 500  # the server's limit (ProgressBody.items)
MAX_EVENTS = 20_000  # and its limit of events per call, all tasks together

_Pending = tuple[dict[str, Any], "asyncio.Future[EventsOut]"]


class ProgressPipe:
    """`post(task_id, token, events, phase=None)`, shaped like `WorkerApi.post_events`."""

    def __init__(self, api: WorkerApi[Async], queue: str) -> None:
        self.api = api
        self.queue = queue
        self.merged = True  # False once the control plane turned out not to have the route
        self.calls = 0  # HTTP calls made (make bench-stream reports events per call)
        self._pending: list[_Pending] = []
        self._sending: asyncio.Task[None] | None = None

    async def post(
        self, task_id: str, token: str, events: list[dict[str, Any]], phase: str | None = None
    ) -> EventsOut:
        if not self.merged:
            self.calls += 1
            return await self.api.post_events(task_id, token, events, phase=phase)
        item: dict[str, Any] = {"id": task_id, "token": token, "events": events}
        if phase:
            item["phase"] = phase
        fut: asyncio.Future[EventsOut] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send_all())
        return await fut

    async def _send_all(self) -> None:
        while self._pending:
            batch = self._take()
            try:
                await self._send(batch)
            except BaseException as exc:  # every waiting task hears of it (it retries itself)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(
                            exc if isinstance(exc, Exception) else ApiError(0, "stopped", str(exc))
                        )
                if not isinstance(exc, Exception):
                    raise

    def _take(self) -> list[_Pending]:
        n, events = 0, 0
        for item, _ in self._pending[:MAX_ITEMS]:
            events += len(item["events"])
            if n and events > MAX_EVENTS:
                break
            n += 1
        batch, self._pending = self._pending[:n], self._pending[n:]
        return batch

    async def _send(self, batch: list[_Pending]) -> None:
        self.calls += 1
        try:
            answer = await self.api.post_progress(self.queue, [item for item, _ in batch])
        except ApiError as exc:
            if exc.status in (404, 405) and exc.code in ("not_found", "method_not_allowed", "http_error"):
                log.info("the control plane has no %s events route: posting per task", self.queue)
                self.merged = False
                await asyncio.gather(*(self._alone(item, fut) for item, fut in batch))
                return
            raise
        results = {r.id: r for r in answer.items}
        for item, fut in batch:
            if not fut.done():
                _settle(fut, results.get(item["id"]))

    async def _alone(self, item: dict[str, Any], fut: asyncio.Future[EventsOut]) -> None:
        self.calls += 1
        try:
            out = await self.api.post_events(
                item["id"], item["token"], item["events"], phase=item.get("phase")
            )
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(out)


def _settle(fut: asyncio.Future[EventsOut], result: ProgressResult | None) -> None:
    if result is None:
        fut.set_exception(ApiError(0, "invalid_response", "the answer left a task's events out"))
    elif result.problem is not None:
        p = result.problem
        fut.set_exception(ApiError(p.status, p.code, p.detail))
    else:
        fut.set_result(EventsOut(last_seq=result.last_seq or 0, cancel_requested=result.cancel_requested))
