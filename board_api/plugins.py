"""What the entry point plugs into the control-plane app: the MCP endpoint, Slack, the chat
agent. The REST app does not import them (they live on its own floor or above it); they are
handed to `create_app` and run inside its lifespan.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from fastapi import FastAPI

from kernel.chat import Chat
from store.db import Database

__all__ = ["ChatFactory", "Plugin"]

# Builds the chat agent for the app's database once the lifespan has opened it.
ChatFactory = Callable[[Database], Chat]


class Plugin(Protocol):
    def install(self, app: FastAPI) -> None:
        """Add routes and state; called once, when the app is built."""
        ...

    def running(self, db: Database) -> AbstractAsyncContextManager[None]:
        """Entered in the lifespan after the database is up, left before it closes."""
        ...
