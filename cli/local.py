"""`exec ... --local --cwd DIR`: run the execution on a throw-away worker serving DIR.

    with LocalWorker(ctx, Path("."), llm_api_base=None, llm_api_key=None) as queue:
        ... create the task on `queue`, follow it ...

On entry: a queue `local-<user>-<random>` is created through the API and a worker (in this
process, on its own thread and event loop) serves it with DIR as every task's working
directory (`command` agents run there; an `llm` agent's bash and file tools work there). On
exit, whatever the reason (the end, an error, Ctrl-C): executions still unfinished on the
queue are cancelled, the worker stops, and the queue is deleted.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import typer

from cli.common import client, escape, state
from cli.output import err_console
from kernel.statuses import UNFINISHED

__all__ = ["LocalWorker", "local_note"]

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def local_note(queue: str, cwd: Path) -> str:
    """What the meta agent is told about the local run (added to its system prompt)."""
    return (
        f"\n\nThis request runs locally: a worker serving the directory {cwd} is live on queue "
        f"`{queue}`. Create every task on queue `{queue}` (pass queue={queue!r} to create_task); "
        "do not pick another queue."
    )


def queue_name(user: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", user.lower()).strip("-_")[:40] or "user"
    return f"local-{slug}-{secrets.token_hex(3)}"


class LocalWorker:
    """A throw-away queue with one worker in `cwd`, for the length of a `with` block."""

    def __init__(
        self,
        ctx: typer.Context,
        cwd: Path,
        *,
        user: str,
        llm_api_base: str | None = None,
        llm_api_key: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.cwd = cwd.resolve()
        self.queue = queue_name(user)
        self.llm_api_base = llm_api_base
        self.llm_api_key = llm_api_key
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"worker-{self.queue}", daemon=True)
        self._created = False

    # --- the worker thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the main thread
            self._error = exc
        finally:
            self._started.set()

    async def _serve(self) -> None:
        from worker.main import run_worker
        from worker.sandbox import Sandbox, configure

        configure(Sandbox.from_env(os.environ))
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        st = state(self.ctx)
        await run_worker(
            url=st.url,
            api_key=st.api_key or "",
            queue=self.queue,
            concurrency=1,
            workdir=self.cwd,
            grace_seconds=10.0,
            stop=self._stop,
            llm_api_base=self.llm_api_base,
            llm_api_key=self.llm_api_key,
            name=f"local:{self.cwd}"[:200],
        )

    # --- the main thread ----------------------------------------------------------------

    def __enter__(self) -> str:
        if not self.cwd.is_dir():
            raise typer.BadParameter(f"{self.cwd} is not a directory", param_hint="'--cwd'")
        c = client(self.ctx)
        c.queues.create(self.queue, description=f"exec --local in {self.cwd}", environment="local")
        self._created = True
        state(self.ctx).local_queue = self.queue
        try:
            self._thread.start()
            self._wait_live()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.queue

    def _wait_live(self) -> None:
        c = client(self.ctx)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise typer.Exit(self._report_worker_error())
            if c.queues.get(self.queue).active_workers:
                return
            time.sleep(0.05)
        err_console().print(f"[red]error: the local worker did not start within {READY_TIMEOUT:.0f} s[/]")
        raise typer.Exit(1)

    def _report_worker_error(self) -> int:
        exc = self._error
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else "it stopped"
        err_console().print(f"[red]error: the local worker failed: {escape(detail)}[/]", soft_wrap=True)
        return 1

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._created:
            return
        try:
            self._cancel_unfinished(say=True)
        finally:
            self._stop_worker()
            self._cancel_unfinished(say=False)  # handed back by the stopping worker
            self._delete_queue()
            state(self.ctx).local_queue = None

    def _cancel_unfinished(self, *, say: bool) -> None:
        from sdk.client import ApiError

        c = client(self.ctx)
        try:
            items = c.executions.list(queue=self.queue, status=list(UNFINISHED), limit=200).items
            for task in items:
                if say:
                    err_console().print(
                        f"[dim]cancelling execution {escape(task.id)}: its local worker stops[/]"
                    )
                c.executions.cancel(task.id)
        except ApiError as exc:
            err_console().print(f"[yellow]warning: could not cancel executions on {self.queue}: {exc}[/]")

    def _stop_worker(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop has just closed
                pass
        if self._thread.ident is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                err_console().print("[yellow]warning: the local worker did not stop in time[/]")

    def _delete_queue(self) -> None:
        from sdk.client import ApiError

        try:
            client(self.ctx).queues.delete(self.queue)
        except ApiError as exc:
            err_console().print(
                f"[yellow]warning: could not delete queue {self.queue}: {escape(str(exc))}; "
                f"delete it later with `meta-agent queues delete {self.queue}`[/]",
                soft_wrap=True,
            )

    def describe(self) -> dict[str, Any]:
        return {"queue": self.queue, "cwd": str(self.cwd)}
