"""`meta-agent serve`: migrations, the control plane on uvicorn, and an embedded worker.

The embedded worker is an ordinary worker talking HTTP to this same process, so the
single-node default exercises exactly the protocol remote workers use.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from board_api.state import state_of
from kernel.loop import settle_heap
from kernel.redact import register
from kernel.settings import Settings

log = logging.getLogger("cli.serve")


async def prepare(settings: Settings) -> bool:
    """Migrate (SQLite), load examples, and say whether any API key exists."""
    from store import keys, migrate
    from store.catalog import create_queue
    from store.db import Database
    from store.models import WorkerQueue
    from store.seed import apply_catalog, read_catalog

    db = Database(settings.database_url)
    try:
        if db.is_sqlite:
            await asyncio.to_thread(migrate.upgrade, settings.database_url)
        else:
            head = migrate.head()
            current = await asyncio.to_thread(migrate.current, settings.database_url)
            if current != head:
                raise SystemExit(
                    f"the database schema is at {current or 'nothing'}, this version needs {head}: "
                    "run `meta-agent db upgrade` first"
                )
        async with db.tx() as tx:
            if settings.embedded_worker:
                await create_queue(
                    tx,
                    WorkerQueue(name=settings.embedded_worker_queue, description="Embedded worker"),
                    exist_ok=True,
                )
            if settings.examples:
                done = await apply_catalog(tx, read_catalog(settings.examples))
                log.info("loaded %s", done)
        async with db.read() as s:
            return await keys.has_active_keys(s)
    finally:
        await db.dispose()


# A wildcard bind is reached from this machine on loopback.
_LOCAL = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Server(uvicorn.Server):
    """On the first SIGINT/SIGTERM, let the embedded worker hand its tasks back first."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, stop_worker: asyncio.Event | None) -> None:
        super().__init__(config)
        self.app, self.stop_worker = app, stop_worker

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # the lifespan is up, so is whatever it built: freeze it too
            frozen = settle_heap()
            log.info("start-up heap frozen for the cyclic GC (%d objects)", frozen)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.stop_worker is not None and not self.stop_worker.is_set():
            self.stop_worker.set()
            return
        state_of(self.app).drain()
        super().handle_exit(sig, frame)


async def serve(settings: Settings) -> None:
    from cli.compose import create_app

    has_keys = await prepare(settings)
    if not settings.open_mode_allowed() and not has_keys:
        where = settings.host or "every interface (an empty host)"
        raise SystemExit(
            f"refusing to listen on {where} with no API keys: anyone could run commands. "
            "Create one first (`meta-agent keys create admin --scope admin` against a loopback server, "
            "or bind to 127.0.0.1)"
        )
    # The embedded worker's credential: minted here, held in memory only, worker scope. It
    # lets the worker go on when the first key is created on a running open server (with no
    # credential of its own it was refused and the server stopped), and spares it any key.
    worker_token = f"maw_{secrets.token_urlsafe(32)}" if settings.embedded_worker else None
    register(worker_token)
    try:
        app = create_app(settings, worker_token=worker_token)
    except ValueError as exc:  # a malformed setting, e.g. META_AGENT_ALLOWED_HOSTS
        raise SystemExit(str(exc)) from None
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        http=http_protocol(),
    )
    stop_worker = asyncio.Event() if settings.embedded_worker else None
    server = _Server(config, app, stop_worker)
    base = f"http://{_url_host(settings.host or '0.0.0.0')}:{settings.port}"
    print(f"meta-agent control plane on {base}", file=sys.stderr)
    print(f"  board:    {base}/", file=sys.stderr)
    print(f"  API docs: {base}/docs   (OpenAPI: {base}/openapi.json)", file=sys.stderr)
    print(f"  database: {settings.database_url}", file=sys.stderr)
    if stop_worker is None:
        await server.serve()
        return

    from sdk.client import AsyncControlPlaneClient
    from worker.main import Worker
    from worker.runtimes.llm import LlmRuntime  # cheap: litellm loads on the first llm task
    from worker.sandbox import Sandbox, configure

    configure(Sandbox(settings.sandbox, settings.sandbox_user))

    print(
        f"  embedded worker on queue {settings.embedded_worker_queue!r} (x{settings.embedded_worker_concurrency})",
        file=sys.stderr,
    )

    async def run_worker() -> None:
        while not server.started and not server.should_exit:
            await asyncio.sleep(0.05)
        local = f"http://{_url_host(_LOCAL.get(settings.host, settings.host))}:{settings.port}"
        async with AsyncControlPlaneClient(url=local, api_key=worker_token) as client:
            w = Worker(
                client,
                settings.embedded_worker_queue,
                concurrency=settings.embedded_worker_concurrency,
                workspace_root=settings.workspace_root,
                name="embedded",
                runtimes={"llm": LlmRuntime(api_base=settings.llm_api_base, api_key=settings.llm_api_key)},
            )
            await w.run(stop_worker)
        app.state.drain()
        server.should_exit = True

    await asyncio.gather(server.serve(), run_worker())


def http_protocol() -> type[asyncio.Protocol] | str:
    """Ours (one write per response) when httptools is there, else uvicorn's choice."""
    try:
        from cli.http_protocol import CoalescingHttpToolsProtocol
    except ImportError:  # uvicorn without httptools: h11
        return "auto"
    return CoalescingHttpToolsProtocol


def run_server(settings: Settings) -> None:
    from kernel import logs, loop

    logs.setup(settings.log_format, settings.log_level)
    loop.run(serve(settings))


if __name__ == "__main__":
    run_server(Settings())
