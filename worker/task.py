"""One claimed task inside the worker: run its runtime, make every call for it, report the end.

Every call carries the lease token and is retried while the control plane is away (no
answer, 429, 5xx; backoff capped at ~2 s). A 409 means the lease is gone: the task is
abandoned without another call. The end is reported in one call that also carries the
events still buffered:

    Outcome             -> complete
    InputRequested      -> request-input (the worker lets go; resumed on a later claim)
    stopped at shutdown -> release (back to pending)
    cancel requested    -> fail(code="cancelled"), which the server records as cancelled
    TaskFailed / crash  -> fail(code, message)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sdk.client import ApiError, AsyncControlPlaneClient, WorkerApi
from sdk.exchange import ReportOut
from sdk.resources import Async
from worker.batcher import EventBatcher
from worker.capabilities import Inventory, missing_message
from worker.progress import ProgressPipe
from worker.runtime import InputRequested, Outcome, Runtime, TaskContext, TaskFailed, get_runtime
from worker.secrets import Masker, fetch

__all__ = ["CANCEL_GRACE", "HeldTask", "Lost"]

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")
# Sends one task's end in the worker's next exchange (worker.exchange) and returns its answer.
Reporter = Callable[[dict[str, Any]], Awaitable[ReportOut]]

BACKOFF_START = 0.05
BACKOFF_CAP = 2.0
# After ctx.cancelled is set, a runtime gets this long to stop by itself (the command
# runtime needs up to ~2 s to kill a process group) before it is cancelled outright.
CANCEL_GRACE = 5.0


def _as_outcome(result: object) -> Outcome:
    """A runtime registered from elsewhere may return its bare result instead of an Outcome."""
    return result if isinstance(result, Outcome) else Outcome(result)


class Lost(Exception):
    """The task's lease is gone (409, or the heartbeat said so): no more calls for it."""


class HeldTask:
    """A task this worker holds a lease on, from claim to its final report."""

    def __init__(
        self,
        api: WorkerApi[Async],
        item: dict[str, Any],
        workspace: Path,
        *,
        cancel_grace: float = CANCEL_GRACE,
        runtimes: Mapping[str, Runtime] | None = None,
        client: AsyncControlPlaneClient | None = None,
        reporter: Reporter | None = None,
        progress: ProgressPipe | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        task = item["task"]
        self.progress = progress
        self.api = api
        self.inventory = inventory or Inventory()
        self.reporter = reporter
        self.runtimes = runtimes or {}
        self.cancel_grace = cancel_grace
        self.abort: str | None = None  # None | "lost" | "release"
        self.finished = False  # completed or failed: the workspace can go
        self.batcher = EventBatcher(self._post_events)
        self.mask = Masker()  # the task's secret values, out of everything sent (worker.secrets)
        self.ctx = TaskContext(
            task=task,
            agent=item.get("agent") or {},
            token=item["token"],
            workspace=workspace,
            inputs=dict(task.get("inputs") or {}),
            checkpoint=item.get("checkpoint", task.get("checkpoint")),
            on_event=self.batcher.add,
            on_artifact=self._put_artifact,
            on_checkpoint=self._checkpoint,
            on_phase=self.batcher.set_phase,
            client=client,
        )

    @property
    def id(self) -> str:
        return self.ctx.id

    @property
    def token(self) -> str:
        return self.ctx.token

    def lose(self) -> None:
        """The lease is gone: stop the runtime and make no more calls."""
        self.abort = "lost"
        self.ctx.cancelled.set()
        self.batcher.abandon()

    def release(self) -> None:
        """Stop the runtime and hand the task back (worker shutdown)."""
        self.abort = self.abort or "release"
        self.ctx.cancelled.set()

    async def call(
        self, fn: Callable[Concatenate[str, str, P], Awaitable[T]], *args: P.args, **kw: P.kwargs
    ) -> T:
        """`fn(task_id, token, *args, **kw)`, retried while the control plane is away."""
        delay = BACKOFF_START
        while True:
            if self.abort == "lost":
                raise Lost
            try:
                return await fn(self.id, self.token, *args, **kw)
            except ApiError as exc:
                if exc.status == 409:
                    self.lose()
                    raise Lost from exc
                if not exc.retryable:
                    raise
                log.warning("task %s: %s failed: %s; retrying in %.2f s", self.id, fn.__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    async def _post_events(self, events: list[dict[str, Any]], phase: str | None = None) -> None:
        try:
            post = self.progress.post if self.progress is not None else self.api.post_events
            answer = await self.call(post, self.mask.data(events), phase=phase)
        except ApiError as exc:  # refused outright (too big, a reserved kind): not worth the task
            log.warning("task %s: %d events refused: %s", self.id, len(events), exc)
            return
        if answer.cancel_requested:
            self.ctx.cancelled.set()

    async def _put_artifact(self, name: str, content: bytes, media_type: str) -> object:
        await self.batcher.flush()  # the events before the artifact come first in the log
        try:
            return await self.call(self.api.put_artifact, name, self.mask.bytes(content), media_type)
        except ApiError as exc:
            self.batcher.add(
                "log", {"level": "warning", "message": f"artifact {name} was refused: {exc.detail}"}
            )
            return None

    async def _checkpoint(self, data: Any) -> None:
        await self.batcher.flush()
        await self.call(self.api.checkpoint, self.mask.data(data))

    async def run(self) -> None:
        """Run the task and report its end (`finished` says whether it reached a final state)."""
        try:
            await self._report(await self._execute())
        except Lost:
            log.info("task %s: no longer ours; dropped", self.id)
        except ApiError as exc:
            log.error("task %s: the control plane refused the final report: %s", self.id, exc)
        finally:
            self.batcher.abandon()

    async def _execute(self) -> Outcome | BaseException:
        """Run the runtime to its end; its Outcome or the exception it ended with."""
        ctx = self.ctx
        if not ctx.agent:
            return TaskFailed("no_agent", "the claim carried no agent to run")
        name = str(ctx.agent.get("runtime"))
        try:
            runtime = self.runtimes.get(name) or get_runtime(name)
        except TaskFailed as exc:
            return exc
        # Met when the control plane handed it over; a binary removed since, a variable
        # unset... fails it here, naming each item, before anything runs.
        gone = self.inventory.missing(ctx.task.get("needs") or [])
        if gone:
            return TaskFailed("missing_prerequisites", missing_message(gone))
        if ctx.agent.get("secrets"):
            try:
                ctx.secrets = await fetch(lambda: self.call(self.api.secrets))
            except (TaskFailed, ApiError) as exc:
                return exc if isinstance(exc, TaskFailed) else TaskFailed("missing_secret", exc.detail)
            self.mask = Masker(ctx.secrets.values())
        runner = asyncio.create_task(runtime.run(ctx))
        stop = asyncio.create_task(ctx.cancelled.wait())
        try:
            await asyncio.wait({runner, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not runner.done() and self.abort != "lost":
                await asyncio.wait({runner}, timeout=self.cancel_grace)
            if not runner.done():
                runner.cancel()
                await asyncio.wait({runner})
        finally:
            stop.cancel()
            if not runner.done():  # we are being torn down ourselves
                runner.cancel()
        if self.abort == "lost":
            raise Lost
        if runner.cancelled():
            return TaskFailed("cancelled", "the runtime did not stop by itself and was cancelled")
        exc = runner.exception()
        if exc is None:
            outcome = _as_outcome(runner.result())
            try:  # found out here, not as a crash inside the HTTP call that reports it
                json.dumps([outcome.result, outcome.usage])
            except (TypeError, ValueError) as bad:
                return TaskFailed("invalid_result", f"the runtime's result is not JSON: {bad}")
            return outcome
        if not isinstance(exc, TaskFailed | InputRequested):
            log.error("task %s: runtime crashed", self.id, exc_info=exc)
        return exc

    async def _report(self, outcome: Outcome | BaseException) -> None:
        api = self.api
        events = self.mask.data(await self.batcher.drain())
        if isinstance(outcome, Outcome):
            await self._final("complete", outcome.result, usage=outcome.usage, events=events)
        elif isinstance(outcome, InputRequested) and not (self.ctx.cancelled.is_set() and self.abort is None):
            checkpoint = outcome.checkpoint if outcome.checkpoint is not None else self.ctx.checkpoint
            kw = {"choices": outcome.choices, "key": outcome.key, "checkpoint": checkpoint, "events": events}
            await self._final("request-input", self.mask.text(outcome.question), **self.mask.data(kw))
        elif self.abort == "release":
            await self.call(api.release, events=events)
            log.info("task %s: released back to the queue", self.id)
        else:
            if self.ctx.cancelled.is_set():
                code = "cancelled"
                message = outcome.message if isinstance(outcome, TaskFailed) else "cancelled on request"
            elif isinstance(outcome, TaskFailed):
                code, message = outcome.code, outcome.message
            else:
                code, message = "runtime_error", f"{type(outcome).__name__}: {outcome}"
            await self._fail(code, message, events)
            self.finished = True
            log.debug("task %s: failed (%s)", self.id, code)

    async def _final(self, what: str, *args: Any, **kw: Any) -> None:
        """Send the report; if the control plane refuses it (not 409), fail the task instead."""
        try:
            if what == "complete":
                await self._complete(*args, **kw)
            else:
                await self.call(self.api.request_input, *args, **kw)
            self.finished = what == "complete"
            log.debug("task %s: %s", self.id, what)
            return
        except ApiError as exc:
            log.error("task %s: %s refused: %s", self.id, what, exc)
            message = f"the control plane refused the worker's {what}: {exc.detail}"
        for events in (kw.get("events"), None):  # the events may be what it refused
            try:
                await self._fail("worker_error", message, events)
                self.finished = True
                return
            except ApiError as again:
                log.error("task %s: fail refused too: %s", self.id, again)

    async def _complete(
        self, result: Any, usage: dict[str, Any] | None, events: list[dict[str, Any]]
    ) -> None:
        result = self.mask.data(result)
        if self.reporter is None:
            await self.call(self.api.complete, result, usage=usage, events=events)
            return
        body: dict[str, Any] = {"result": result, "events": events}
        if usage is not None:
            body["usage"] = usage
        await self._send(body)

    async def _fail(self, code: str, message: str, events: list[dict[str, Any]] | None) -> None:
        message = self.mask.text(message)
        if self.reporter is None:
            await self.call(self.api.fail, code, message, events=events)
            return
        await self._send({"error": {"code": code, "message": message}, "events": events or []})

    async def _send(self, body: dict[str, Any]) -> None:
        """One report through the worker's exchange; its refusal raised as the call's would be."""
        if self.abort == "lost" or self.reporter is None:
            raise Lost
        answer = await self.reporter({"id": self.id, "token": self.token, **body})
        problem = answer.problem
        if problem is None:
            return
        if problem.status == 409:
            self.lose()
            raise Lost
        raise ApiError(problem.status, problem.code, problem.detail)
