"""The control-plane ASGI app: `create_app(settings)`.

The lifespan owns the database engines, the PostgreSQL LISTEN relay and the lease reaper;
nothing touches the network or the database at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from board_api import errors as problems
from board_api.bodylimit import BodyLimit
from board_api.feeds import Feeds
from board_api.hook_callbacks import HookCallbacks
from board_api.hostguard import HostGuard, HostRule
from board_api.hotroutes import HotRoutes
from board_api.limits import ConnectionLimiter
from board_api.metrics import Metrics
from board_api.plugins import ChatFactory, Plugin
from board_api.routes import audit as audit_routes
from board_api.routes import catalog, ops, schedules, streams, tasks, workers
from board_api.routes import chat as chat_routes
from board_api.routes.secrets import SecretStore
from board_api.state import BoardState, state_of
from kernel import __version__, errors
from kernel.llm import close_clients as close_llm_clients
from kernel.settings import Settings
from store import artifacts, retention
from store import schedules as schedule_service
from store import tasks as task_service
from store.auth import Gate
from store.db import Database, libpq_dsn
from store.hub import listen_postgres

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
NO_CACHE = {"Cache-Control": "no-cache"}


class NoCacheStatic(StaticFiles):
    """The board's modules and styles, revalidated on every load (they are small)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        resp = super().file_response(full_path, stat_result, scope, status_code)
        resp.headers.update(NO_CACHE)
        return resp


async def _reaper(db: Database, interval: float, stop: asyncio.Event, metrics: Metrics) -> None:
    """Runs until `stop` is set; stopped that way rather than cancelled, so a shutdown never
    cuts a query off with a pooled connection checked out."""
    last_sweep = 0.0
    while not stop.is_set():
        try:
            # A read first: most rounds find nothing, and a write transaction would take
            # SQLite's writer lock every second for no reason.
            async with db.read() as s:
                due = await task_service.has_expired_leases(s)
            reaped = []
            if due:
                async with db.tx() as tx:
                    reaped = await task_service.reap_expired(tx)
            if time.monotonic() - last_sweep > 600:
                last_sweep = time.monotonic()
                async with db.tx() as tx:
                    await task_service.forget_dead_workers(tx)
                    await artifacts.forget_orphans(tx)
            for t in reaped:
                metrics.failed(t)  # worker_lost, counted by failure class
                log.info(
                    "lease expired: task %s is now %s",
                    t.id,
                    t.status,
                    extra={"task_id": t.id, "status": t.status},
                )
        except errors.Unavailable:
            log.warning("reaper: database unavailable")
        except Exception:
            log.exception("reaper failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    worker_token: str | None = None,
    plugins: Sequence[Plugin] = (),
    chat: ChatFactory | None = None,
) -> FastAPI:
    """The REST API, the streams and the board. `worker_token`: the credential `serve` minted
    for its embedded worker (worker scope). `plugins` (MCP, Slack) and `chat` (the meta
    agent) come from the entry point: `cli.compose.create_app` is the whole control plane."""
    plugins = [HookCallbacks(settings), *plugins]  # webhooks in: routes and result callbacks
    plugins.insert(0, SecretStore(settings))  # named secrets: routes, masking of stored values
    app = FastAPI(
        title="meta-agent control plane",
        version=__version__,
        description="Durable tasks for agents: REST + SSE, worker protocol. See docs/protocol.md.",
        lifespan=_lifespan(settings, db, plugins, chat),
        # FastAPI's own OpenTelemetry (0.165+) asked the global providers on every request
        # (three environment lookups and type checks, ~15 Python calls); tracing here is
        # board_api/tracing.py's, with its own provider, so FastAPI's would only add a
        # second span per request where a global provider exists.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state = _state(settings, worker_token)
    problems.install(app)
    app.add_middleware(HotRoutes)  # innermost: the caller is known and the body counted
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, artifact_limit=settings.max_artifact_bytes)
    app.add_middleware(HostGuard, rule=HostRule.of(settings))  # outermost: before any body is read

    # Routes are matched in order, one by one: the worker protocol and tasks (the hot path:
    # a call per task) go first, so most requests stop looking after a few. The audit routes
    # come before tasks' (`/tasks/export` is not a task id).
    hot_first = (workers.router, audit_routes.router, tasks.router, catalog.router, streams.router)
    for r in (*hot_first, ops.router, chat_routes.router):
        app.include_router(r, prefix="/api/v1")
    app.include_router(schedules.router, prefix="/api/v1")
    app.include_router(ops.ops)
    if settings.otel_exporter:
        from board_api.tracing import exporter_for, instrument

        instrument(app, exporter_for(settings.otel_exporter))

    for plugin in plugins:
        plugin.install(app)
    _board(app)
    return app


def _state(settings: Settings, worker_token: str | None) -> BoardState:
    """What the routes share, before the lifespan adds the database and what needs it."""
    state = BoardState()
    state.settings = settings
    state.gate = Gate(open_mode=settings.open_mode_allowed(), worker_token=worker_token)
    state.key_cache = state.gate.cache
    state.metrics = Metrics()
    state.worker_seen = {}
    state.limiter = ConnectionLimiter(settings.max_streams_per_key)
    state.chat_limiter = ConnectionLimiter(
        settings.max_chat_turns_per_key,
        what=f"this key already runs {settings.max_chat_turns_per_key} meta-agent turns; wait for one to end",
    )
    state.draining = False

    def drain() -> None:
        state.draining = True
        database = state.database()
        if database is not None:
            database.hub.publish_all()  # wakes the parked claims, which see `draining`

    state.drain = drain
    return state


def _lifespan(
    settings: Settings, db: Database | None, plugins: Sequence[Plugin], chat: ChatFactory | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Opens the database (unless `db` is handed in, which the caller then owns), starts the
    LISTEN relay, the reaper and the plugins; stops them all, whatever fails on the way."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncGenerator[None]:
        state = state_of(app)
        database = db or Database(settings.database_url)
        database.hub.bind(asyncio.get_running_loop())
        state.db = database
        state.feeds = Feeds(database)
        background = await _listen(database, settings)
        stopping = asyncio.Event()
        reaper = asyncio.create_task(_reaper(database, settings.reaper_interval, stopping, state.metrics))
        # Every replica runs one; the database decides which fires a due time (store/schedules.py).
        limits = {"max_prompt_chars": settings.max_prompt_chars, "max_attempts": settings.max_attempts}
        # Notify targets this process can deliver: a plugin that relays them says which kinds.
        deliver = {kind for plugin in plugins for kind in _notify_kinds(plugin)}
        ticker = asyncio.create_task(
            schedule_service.run_ticker(database, stopping, limits=limits, deliver=deliver)
        )
        background.append(ticker)
        days, every = settings.retention_days, settings.retention_interval
        background.append(asyncio.create_task(retention.run_pruner(database, days, stopping, every)))
        state.chat = chat(database) if chat is not None else None
        try:
            async with contextlib.AsyncExitStack() as running:
                for plugin in plugins:
                    await running.enter_async_context(plugin.running(database))
                yield
        finally:
            await _stop(state, stopping, reaper, background, dispose=db is None)

    return lifespan


def _notify_kinds(plugin: Plugin) -> tuple[str, ...]:
    """The schedule notify kinds a plugin relays (Slack: "slack"); none for the others."""
    kinds: tuple[str, ...] = getattr(plugin, "notify_kinds", ())
    return kinds


async def _listen(database: Database, settings: Settings) -> list[asyncio.Task[None]]:
    """PostgreSQL's LISTEN relay (other replicas' notifications), up within 5 s or late."""
    if database.is_sqlite:
        return []
    ready = asyncio.Event()
    relay = asyncio.create_task(listen_postgres(database.hub, libpq_dsn(settings.database_url), ready))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ready.wait(), 5)
    return [relay]


async def _stop(
    state: BoardState,
    stopping: asyncio.Event,
    reaper: asyncio.Task[None],
    background: list[asyncio.Task[None]],
    *,
    dispose: bool,
) -> None:
    try:
        state.feeds.close()
        stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reaper), 10)
    finally:
        # Torn down without a lifespan shutdown (uvicorn's forced exit, where every
        # task is cancelled at once), the waits above raise CancelledError: the rest
        # must run all the same, or the pool is never closed.
        background.append(reaper)  # cancelled below only if it did not stop in time
        for t in background:
            t.cancel()
        try:
            for t in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await close_llm_clients()  # the meta agent's (chat), if a model was ever called
        finally:
            if dispose:  # whatever failed above, the pool's connections get closed
                await state.db.dispose()


def _board(app: FastAPI) -> None:
    """The board (a static page and its modules) and the API's index."""

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        # no-cache: the page and its modules revalidate (ETag), so an upgrade shows at once.
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=NO_CACHE)

    app.mount("/static", NoCacheStatic(directory=STATIC), name="static")

    @app.get("/api/v1", include_in_schema=False)
    async def api_root(request: Request) -> dict[str, str]:
        return {"docs": str(request.url_for("swagger_ui_html")), "openapi": str(request.url_for("openapi"))}
