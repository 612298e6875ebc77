"""A2A (Agent2Agent): other agents use ours through the protocol, with a2a-sdk's server.

The entry point (`cli/compose.py`) hands `plugin(settings, verify, is_open)` to the app as a
plugin (board_api/plugins.py): `install(app)` adds

- `GET /.well-known/agent-card.json`: the agent card, our agents as its skills (to a caller
  with a key, or on an open server; anonymous callers see the card without skills);
- `POST /a2a`: JSON-RPC 2.0 (A2A 1.0 method names, and the 0.3 ones: `message/send`,
  `message/stream`, `tasks/get`, `tasks/cancel`), with an API key as the bearer token,

and `running(db)` gives the handler the app's database. `verify` looks a key up (store.auth)
and `is_open` says whether the server runs without keys: the same rule as `/mcp`. See
docs/a2a.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING

from kernel.settings import Settings
from store.auth import Principal
from store.db import Database

if TYPE_CHECKING:  # a2a-sdk (protobuf, its JSON-RPC server) is imported when the app is built
    from fastapi import FastAPI

    from integrations.a2a.handler import MetaAgentHandler

__all__ = ["A2AEndpoint", "Verify"]

Verify = Callable[[str], Awaitable[Principal | None]]


class A2AEndpoint:
    def __init__(self, settings: Settings, verify: Verify, is_open: Callable[[], Awaitable[bool]]) -> None:
        self.settings, self.verify, self.is_open = settings, verify, is_open
        self.handler: MetaAgentHandler | None = None

    def install(self, app: FastAPI) -> None:
        from integrations.a2a.handler import MetaAgentHandler
        from integrations.a2a.routes import Routes

        self.handler = MetaAgentHandler(self.settings)
        Routes(self.handler, self.settings, self.verify, self.is_open).install(app)

    @contextlib.asynccontextmanager
    async def running(self, db: Database) -> AsyncGenerator[None]:
        assert self.handler is not None, "install() comes first"
        self.handler.db = db
        try:
            yield
        finally:
            self.handler.db = None
