"""The worker's calls for its queue, merged: claims and the reports of finished tasks.

One `exchange` call reports what finished and claims what there is room for, so a busy
worker makes one call per round instead of a complete per task plus a claim. Two kinds of
call are in flight at most:

    poll   no reports; long-polls for up to the free slots (as `claim` did)
    push   the reports queued since the last push, plus a claim for the slots the poll
           does not already ask for, the reported tasks' own included; answered at once

Reports that finish while a push is in flight wait for it and leave together in the next
one: batches grow with the load and cost nothing when idle (one report, one call). A push
that gets no answer is sent again (the server applies a report at most once: a resent one
it already applied is refused with 409, which the task treats as "no longer ours").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sdk.client import ApiError, WorkerApi
from sdk.exchange import ExchangeOut, ReportOut
from sdk.resources import Async
from sdk.schemas import ClaimedOut
from worker.capabilities import Inventory

__all__ = ["Exchanger"]

log = logging.getLogger(__name__)

BACKOFF_START = 0.05
BACKOFF_CAP = 2.0
# Reports per push, and tasks per claim: the server's limits (ExchangeBody.reports and
# .max_tasks); a worker with more slots fills them over several calls.
MAX_REPORTS = 100
MAX_CLAIM = 100


class Exchanger:
    """Serves claims and reports for one worker until `close()`; `stop_claiming()` first."""

    def __init__(
        self,
        api: WorkerApi[Async],
        queue: str,
        worker_id: str,
        info: dict[str, Any],
        *,
        room: Callable[[], int],
        start: Callable[[ClaimedOut], None],
        claim_wait: float = 30.0,
        inventory: Inventory | None = None,
    ) -> None:
        self.api = api
        self.inventory = inventory  # what the worker has, carried by claims (prerequisites)
        self.queue = queue
        self.worker_id = worker_id
        self.info = info
        self.claim_wait = claim_wait
        self._room = room  # free slots: the claims may ask for this many tasks in all
        self._start = start
        self._pending: list[tuple[dict[str, Any], asyncio.Future[ReportOut]]] = []
        self._wake = asyncio.Event()
        self._claiming = True
        self._closed = False
        self._poll: asyncio.Task[ExchangeOut] | None = None
        self._poll_ask = 0
        self.fatal: ApiError | None = None  # a wrong key or scope: it will not fix itself
        self.refused = asyncio.Event()  # set with `fatal`

    def wake(self) -> None:
        """Something changed (a slot freed, a report queued): reconsider the calls."""
        self._wake.set()

    async def report(self, body: dict[str, Any]) -> ReportOut:
        """Queue one task's report (`{id, token, result | error, usage?, events?}`) and wait
        for the server's answer to it."""
        if self._closed:
            raise ApiError(0, "worker_stopped", "the worker stopped before reporting")
        fut: asyncio.Future[ReportOut] = asyncio.get_running_loop().create_future()
        self._pending.append((body, fut))
        self.wake()
        return await fut

    def stop_claiming(self) -> None:
        """Claim nothing more (shutdown); a parked poll is dropped, reports still go."""
        self._claiming = False
        if self._poll is not None:
            self._poll.cancel()
        self.wake()

    def close(self) -> None:
        self._closed = True
        self.wake()

    async def run(self) -> None:
        """Until `close()`: push queued reports, and keep a poll open while slots are free."""
        delay = BACKOFF_START
        try:
            while not self._closed:
                self._wake.clear()
                if self._pending:
                    ok = await self._push()
                    if not ok:
                        await self._pause(delay)
                        delay = min(delay * 2, BACKOFF_CAP)
                        continue
                    delay = BACKOFF_START
                    continue
                if self._poll is None and self._claiming and self._room() > 0:
                    self._poll_ask = min(self._room(), MAX_CLAIM)
                    self._poll = asyncio.create_task(self._polling(self._poll_ask))
                waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
                if self._poll is not None:
                    waits.add(self._poll)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    if w is not self._poll:
                        w.cancel()
                if self._poll is not None and self._poll in done:
                    if not await self._polled(self._poll):
                        await self._pause(delay)
                        delay = min(delay * 2, BACKOFF_CAP)
                    else:
                        delay = BACKOFF_START
        finally:
            self._closed = True
            if self._poll is not None:
                self._poll.cancel()
                with contextlib.suppress(BaseException):
                    await self._poll
            for _, fut in self._pending:
                if not fut.done():
                    fut.set_exception(ApiError(0, "worker_stopped", "the worker stopped before reporting"))

    async def _call(self, reports: list[dict[str, Any]], ask: int, wait: float) -> ExchangeOut:
        """One exchange; a claim carries the worker's capabilities (or their digest)."""
        fields = await self.inventory.claim_fields() if self.inventory is not None and ask else {}
        answer = await self.api.exchange(
            self.queue, self.worker_id, reports, ask, wait, {**self.info, **fields}
        )
        if self.inventory is not None:
            self.inventory.sent(fields)
        return answer

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing(), seconds)

    async def _closing(self) -> None:
        while not self._closed:
            self._wake.clear()
            await self._wake.wait()

    async def _polling(self, ask: int) -> ExchangeOut:
        """One poll; what it claimed starts as soon as the answer is read, not once this
        loop has woken up to it (two turns of the event loop, ~0.1 ms of a task's start on
        an idle worker)."""
        answer = await self._call([], ask, self.claim_wait)
        for item in answer.tasks:
            self._start(item)
        return answer

    async def _polled(self, poll: asyncio.Task[ExchangeOut]) -> bool:
        """After a poll (its tasks started by `_polling`): False when it failed and a pause
        is due."""
        self._poll, self._poll_ask = None, 0
        if poll.cancelled():
            return True
        exc = poll.exception()
        if exc is None:
            return True
        if isinstance(exc, ApiError):
            if exc.status in (401, 403):
                self.fatal = exc
                self._claiming = False
                self.refused.set()
            log.warning("claim on %s failed: %s", self.queue, exc)
            return False
        raise exc

    async def _push(self) -> bool:
        """Send the queued reports (and claim for free slots the poll does not cover)."""
        batch, self._pending = self._pending[:MAX_REPORTS], self._pending[MAX_REPORTS:]
        # A reported task's slot frees when its report is answered, so the same call claims
        # its replacement: under load, one round trip per batch instead of a push then a
        # poll with the worker idle in between. (A task whose report is refused, not as
        # stale, sends a `fail` next and holds its slot a moment longer: one over, briefly.)
        ask = min(max(0, self._room() + len(batch) - self._poll_ask), MAX_CLAIM) if self._claiming else 0
        try:
            answer = await self._call([b for b, _ in batch], ask, 0)
        except ApiError as exc:
            if exc.retryable:
                log.warning("reporting %d task(s) failed: %s; retrying", len(batch), exc)
                self._pending[:0] = batch  # first in line again, in order
                return False
            for _, fut in batch:  # refused as a whole (e.g. too large): each task decides
                if not fut.done():
                    fut.set_exception(exc)
            return True
        for item in answer.tasks:
            self._start(item)
        outs = {r.id: r for r in answer.reports}
        for body, fut in batch:
            out = outs.get(str(body["id"]))
            if fut.done():
                continue
            if out is None:
                fut.set_exception(ApiError(0, "invalid_response", "the answer left a report out"))
            else:
                fut.set_result(out)
        return True
