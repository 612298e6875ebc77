"""The worker process: claims tasks of one queue over HTTP and runs them.

    claim (long-poll, as many as there are free slots) -> one asyncio task per claimed task
    one heartbeat loop for everything held: `cancel` -> ctx.cancelled, `lost` -> abandon
    stop (SIGTERM): claim no more, let tasks finish for `grace_seconds`, release the rest, bye

It talks to the control plane only through `AsyncControlPlaneClient`, never to the database.
Calls survive a control-plane restart: no answer, 429 and 5xx are retried with a backoff
capped at ~2 s; a 409 (`stale_lease`) means the task is no longer ours and we drop it without
another call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kernel import __version__
from sdk.client import ApiError, AsyncControlPlaneClient
from worker.capabilities import Inventory
from worker.exchange import Exchanger
from worker.progress import ProgressPipe
from worker.runtime import Runtime
from worker.sandbox import not_dumpable
from worker.task import CANCEL_GRACE, HeldTask

__all__ = ["Worker", "run_worker"]

log = logging.getLogger(__name__)

# After the shutdown grace, how long hand-backs may take (retries included) before we quit.
RELEASE_DEADLINE = 10.0
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


async def _wait_or(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True if it is set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


class Worker:
    """Serves one queue with up to `concurrency` tasks at a time."""

    def __init__(
        self,
        client: AsyncControlPlaneClient,
        queue: str,
        *,
        concurrency: int = 1,
        workspace_root: str | Path,
        worker_id: str | None = None,
        name: str | None = None,
        heartbeat_interval: float = 1.0,
        grace_seconds: float = 20.0,
        claim_wait: float = 30.0,
        cancel_grace: float = CANCEL_GRACE,
        keep_workspaces: bool = False,
        runtimes: Mapping[str, Runtime] | None = None,
        workdir: str | Path | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        host = socket.gethostname()
        # Runtimes configured for this worker (e.g. `llm` with its provider settings); other
        # names come from the registry in worker.runtime. Closed (`aclose`) at shutdown.
        self.runtimes = dict(runtimes or {})
        self.client = client
        self.queue = queue
        self.concurrency = max(1, concurrency)
        self.workspace_root = Path(workspace_root)
        self.worker_id = worker_id or f"{host[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self.name = name or host
        self.heartbeat_interval = heartbeat_interval
        self.grace_seconds = grace_seconds
        self.claim_wait = claim_wait
        self.cancel_grace = cancel_grace
        self.keep_workspaces = keep_workspaces
        # A fixed working directory (`exec --local --cwd DIR`): every task runs in it, and it
        # is never removed; only an `artifacts` folder the tasks created there, left empty.
        self.workdir = Path(workdir).resolve() if workdir is not None else None
        self._had_artifacts = False
        self.inventory = inventory or Inventory()  # what it has, for agents' prerequisites
        self._info = {
            "name": self.name,
            "hostname": host,
            "capacity": self.concurrency,
            "version": __version__,
        }
        self._held: dict[str, HeldTask] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._hurry = asyncio.Event()
        self._exchanger = Exchanger(
            client.worker,
            queue,
            self.worker_id,
            self._info,
            room=lambda: self.concurrency - len(self._held),
            start=lambda item: self._start(item.model_dump(mode="json")),  # tasks run on plain JSON
            claim_wait=claim_wait,
            inventory=self.inventory,
        )
        self._exchanging: asyncio.Task[None]
        self._progress = ProgressPipe(client.worker, queue)  # all tasks' events, one call a round

    @property
    def running(self) -> int:
        return len(self._held)

    def hurry(self) -> None:
        """Skip the rest of the shutdown grace (a second Ctrl-C): release running tasks now."""
        self._hurry.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run tasks until `stop` is set, then shut down cleanly."""
        if self.workdir is not None:
            if not self.workdir.is_dir():
                raise NotADirectoryError(f"working directory {self.workdir} does not exist")
            self._had_artifacts = (self.workdir / "artifacts").exists()
        else:
            self.workspace_root.mkdir(parents=True, exist_ok=True)
        log.info("worker %s serving queue %s (concurrency %d)", self.worker_id, self.queue, self.concurrency)
        heartbeats_done = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat_loop(heartbeats_done))
        self._exchanging = asyncio.create_task(self._exchanger.run())
        try:
            await self._claim_loop(stop)
        except asyncio.CancelledError:
            self._hurry.set()
            raise
        finally:
            await self._shutdown()
            self._exchanger.close()
            await asyncio.wait({self._exchanging})
            await self._close_runtimes()
            heartbeats_done.set()
            await asyncio.wait({heartbeat})
            try:
                await self.client.worker.bye(self.worker_id)
            except ApiError as exc:
                log.warning("could not say goodbye to the control plane: %s", exc)
            log.info("worker %s stopped", self.worker_id)

    async def _close_runtimes(self) -> None:
        for runtime in self.runtimes.values():
            close = getattr(runtime, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # shutting down anyway; a leaked pool is not worth a crash
                    log.warning("closing a runtime failed", exc_info=True)

    # --- claiming ------------------------------------------------------------------------

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        """Claim until `stop`: the exchanger keeps a claim open while slots are free (and
        goes on carrying reports until `run` closes it, after the shutdown)."""
        ex = self._exchanger
        stopping = asyncio.create_task(stop.wait())
        refused = asyncio.create_task(ex.refused.wait())
        try:
            await asyncio.wait({stopping, refused, self._exchanging}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            refused.cancel()
            ex.stop_claiming()
        if self._exchanging.done():
            self._exchanging.result()  # its crash is ours
        if ex.fatal is not None:
            raise ex.fatal

    def _workspace(self, task_id: str) -> Path:
        if self.workdir is not None:
            return self.workdir
        safe = task_id if _SAFE_ID.match(task_id) else hashlib.sha256(task_id.encode()).hexdigest()
        return self.workspace_root / safe

    def _start(self, item: dict[str, Any]) -> None:
        workspace = self._workspace(str(item["task"]["id"]))
        held = HeldTask(
            self.client.worker,
            item,
            workspace,
            cancel_grace=self.cancel_grace,
            runtimes=self.runtimes,
            client=self.client,
            reporter=self._exchanger.report,
            progress=self._progress,
            inventory=self.inventory,
        )
        self._held[held.id] = held
        self._runners[held.id] = asyncio.create_task(self._supervise(held), name=f"task-{held.id}")
        log.debug("task %s claimed (attempt %s)", held.id, held.ctx.task.get("attempt"))

    async def _supervise(self, held: HeldTask) -> None:
        try:
            await held.run()
        finally:
            self._held.pop(held.id, None)
            self._runners.pop(held.id, None)
            self._exchanger.wake()
        if self.workdir is not None:
            self._tidy_workdir()
        elif held.finished and not self.keep_workspaces and held.ctx.workspace.exists():
            await asyncio.to_thread(shutil.rmtree, held.ctx.workspace, True)

    def _tidy_workdir(self) -> None:
        artifacts = self.workdir / "artifacts" if self.workdir is not None else None
        if artifacts is None or self._had_artifacts or self._held:
            return
        try:
            artifacts.rmdir()  # only when empty: files a task left there stay
        except OSError:
            pass

    # --- heartbeats ----------------------------------------------------------------------

    async def _heartbeat_loop(self, done: asyncio.Event) -> None:
        while not await _wait_or(done, self.heartbeat_interval):
            held = [h for h in self._held.values() if h.abort != "lost"]
            try:
                answer = await self.client.worker.heartbeat(
                    self.worker_id, self.queue, len(held), [{"id": h.id, "token": h.token} for h in held]
                )
            except ApiError as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for task_id in answer.cancel:
                if h := self._held.get(task_id):
                    log.info("task %s: cancel requested", task_id)
                    h.ctx.cancelled.set()
            for task_id in answer.lost:
                if h := self._held.get(task_id):
                    log.warning("task %s: lease lost, abandoning it", task_id)
                    h.lose()

    # --- shutdown ------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        running = set(self._runners.values())
        if running and not self._hurry.is_set():
            log.info(
                "stopping: waiting up to %.0f s for %d running task(s)", self.grace_seconds, len(running)
            )
            hurry = asyncio.create_task(self._hurry.wait())
            deadline = asyncio.get_running_loop().time() + self.grace_seconds
            while running and not hurry.done():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                done, _ = await asyncio.wait(
                    running | {hurry}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                running -= done
            hurry.cancel()
        if not self._runners:
            return
        log.info("stopping: handing %d task(s) back to the queue", len(self._runners))
        for held in self._held.values():
            held.release()
        _, late = await asyncio.wait(
            set(self._runners.values()), timeout=self.cancel_grace + RELEASE_DEADLINE
        )
        for runner in late:
            runner.cancel()
        if late:
            await asyncio.wait(late)


async def run_worker(
    url: str | None,
    api_key: str | None,
    queue: str,
    concurrency: int = 1,
    workspace_root: str | Path = ".meta-agent/workspaces",
    *,
    worker_id: str | None = None,
    name: str | None = None,
    grace_seconds: float = 20.0,
    heartbeat_interval: float = 1.0,
    stop: asyncio.Event | None = None,
    llm_api_base: str | None = None,
    llm_api_key: str | None = None,
    workdir: str | Path | None = None,
) -> None:
    """Run a worker until SIGTERM/SIGINT (a second signal skips the grace); `meta-agent worker start`.

    `workdir`: run every task in this directory instead of a fresh workspace per task.
    `llm_api_base`/`llm_api_key` go to litellm for the `llm` agents' model calls (litellm's own
    provider variables apply when they are None).
    """
    from worker.runtimes.llm import LlmRuntime  # cheap: litellm itself loads on the first llm task

    not_dumpable()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with AsyncControlPlaneClient(url=url, api_key=api_key, timeout=10.0, source="worker") as client:
        worker = Worker(
            client,
            queue,
            concurrency=concurrency,
            workspace_root=workspace_root,
            worker_id=worker_id,
            name=name,
            grace_seconds=grace_seconds,
            heartbeat_interval=heartbeat_interval,
            runtimes={"llm": LlmRuntime(api_base=llm_api_base, api_key=llm_api_key)},
            workdir=workdir,
        )

        def on_signal() -> None:
            if stop.is_set():
                worker.hurry()
            else:
                log.info("stop requested; finishing running tasks (signal again to hand them back now)")
                stop.set()

        installed: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread: the caller owns `stop`
        try:
            await worker.run(stop)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
