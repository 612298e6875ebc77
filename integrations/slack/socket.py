"""Socket Mode: the control plane connects out to Slack over a websocket (app token), so
it needs no public URL. Slack's SDK reconnects by itself; connecting runs in the background
so an unreachable Slack never holds up (or fails) the control plane's start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

log = logging.getLogger("integrations.slack")


class SocketMode:
    def __init__(
        self, bolt: AsyncApp, app_token: str | None, client: AsyncWebClient, ping_interval: float = 10
    ) -> None:
        self.bolt, self.app_token, self.client, self.ping_interval = bolt, app_token, client, ping_interval
        self.handler: AsyncSocketModeHandler | None = None
        self._connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        # Built here, on the running loop: it opens an aiohttp session at construction.
        self.handler = AsyncSocketModeHandler(
            self.bolt, app_token=self.app_token, web_client=self.client, ping_interval=self.ping_interval
        )
        self._connecting = asyncio.create_task(self._connect(self.handler))

    async def _connect(self, handler: AsyncSocketModeHandler) -> None:
        try:
            await handler.connect_async()  # retries by itself until connected or closed
        except Exception:
            log.exception("Slack Socket Mode: connecting failed")

    @property
    def connected(self) -> bool:
        session = getattr(self.handler.client, "current_session", None) if self.handler else None
        return session is not None and not session.closed

    async def stop(self) -> None:
        if self.handler is not None:
            with contextlib.suppress(Exception):
                await self.handler.close_async()
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
