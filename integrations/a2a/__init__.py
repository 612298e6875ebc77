"""A2A (Agent2Agent): other agents use ours through the protocol, with a2a-sdk's server.

The entry point (`cli/compose.py`) hands `A2AEndpoint(settings, verify, is_open)` to the app
as a plugin (board_api/plugins.py): `install(app)` adds

- `GET /.well-known/agent-card.json`: the agent card, our agents as its skills (to a caller
  with a key, or on an open server; anonymous callers see the card without skills);
- `POST /a2a`: JSON-RPC 2.0 (A2A 1.0 method names, and the 0.3 ones: `message/send`,
  `message/stream`, `tasks/get`, `tasks/cancel`), with an API key as the bearer token,

and `running(db)` gives the handler the app's database. `verify` looks a key up
(store.auth) and `is_open` says whether the server runs without keys: the same rule as
`/mcp`. a2a-sdk takes about a second to import, so the server does not wait for it at start:
it is imported in a thread once the app runs, or by the first call, whichever comes first.
See docs/a2a.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING

from integrations.a2a.paths import CARD_PATH, RPC_PATH
from kernel.settings import Settings
from store.auth import Principal
from store.db import Database

if TYPE_CHECKING:  # a2a-sdk (protobuf, its JSON-RPC server: ~1 s) is imported off the start path
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response

    from integrations.a2a.routes import Routes

__all__ = ["CARD_PATH", "RPC_PATH", "A2AEndpoint", "Verify"]


Verify = Callable[[str], Awaitable[Principal | None]]


class A2AEndpoint:
    def __init__(self, settings: Settings, verify: Verify, is_open: Callable[[], Awaitable[bool]]) -> None:
        self.settings, self.verify, self.is_open = settings, verify, is_open
        self.db: Database | None = None
        self._routes: Routes | None = None
        self._warm: asyncio.Task[object] | None = None

    def install(self, app: FastAPI) -> None:
        # Light endpoints now; the SDK's dispatcher is built on first use (or by the warm-up).
        app.add_route(CARD_PATH, self._card, methods=["GET"], include_in_schema=False)
        app.add_route(RPC_PATH, self._rpc, methods=["POST"], include_in_schema=False)

    def routes(self) -> Routes:
        if self._routes is None:
            from integrations.a2a.handler import MetaAgentHandler
            from integrations.a2a.routes import Routes

            handler = MetaAgentHandler(self.settings)
            handler.db = self.db
            self._routes = Routes(handler, self.settings, self.verify, self.is_open)
        return self._routes

    async def _card(self, request: Request) -> Response:
        return await self.routes().card(request)

    async def _rpc(self, request: Request) -> Response:
        return await self.routes().rpc(request)

    @contextlib.asynccontextmanager
    async def running(self, db: Database) -> AsyncGenerator[None]:
        self.db = db
        if self._routes is not None:
            self._routes.handler.db = db
        # Imported in a thread meanwhile, so neither the start nor the first call waits for it.
        self._warm = asyncio.create_task(
            asyncio.to_thread(importlib.import_module, "integrations.a2a.routes")
        )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await self._warm
            self.db = None
            if self._routes is not None:
                self._routes.handler.db = None
