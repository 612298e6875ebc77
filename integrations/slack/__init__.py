"""Slack: conversations with the meta agent in threads, and the relay of task progress,
questions and results back to them. See README "Slack" and integrations/slack/manifest.yaml.

The entry point calls `plugin(settings, chat)` once; it returns None unless Slack is
configured, else a `SlackIntegration`: a plugin of the control-plane app (`install(app)`
adds the route, `running(db)` runs the relay and Socket Mode for the app's lifespan). HTTP
mode serves `POST /slack/events`; Socket Mode connects out with the app token (no public URL
needed). `chat` builds the meta agent (the chat port) for the app's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

from kernel.chat import Chat
from kernel.settings import Settings
from store.db import Database

if TYPE_CHECKING:  # imported when Slack starts (slack_bolt is heavy)
    from fastapi import FastAPI
    from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler

    from integrations.slack.service import SlackService
    from integrations.slack.socket import SocketMode

log = logging.getLogger("integrations.slack")

__all__ = ["SlackIntegration", "configured", "mode", "plugin"]


def mode(settings: Settings) -> str:
    chosen = (settings.slack_mode or "").strip().lower()
    if chosen in ("http", "socket"):
        return chosen
    return "socket" if settings.slack_app_token else "http"


def configured(settings: Settings) -> bool:
    if not settings.slack_bot_token:
        return False
    if mode(settings) == "socket":
        return bool(settings.slack_app_token)
    return bool(settings.slack_signing_secret)


def plugin(settings: Settings, chat: Callable[[Database], Chat]) -> SlackIntegration | None:
    """The Slack plugin, or None (with a warning when it is half-configured)."""
    if not configured(settings):
        if settings.slack_bot_token:
            log.warning(
                "Slack is not started: %s mode needs %s",
                mode(settings),
                "an app token (SLACK_APP_TOKEN)"
                if mode(settings) == "socket"
                else "a signing secret (SLACK_SIGNING_SECRET)",
            )
        return None
    return SlackIntegration(settings, chat)


class SlackIntegration:
    # A schedule's runs with `notify: slack:...` are bound to their channel only where this
    # plugin runs (board_api/app.py hands it to the schedule ticker); elsewhere they say why not.
    notify_kinds = ("slack",)

    def __init__(self, settings: Settings, chat: Callable[[Database], Chat]) -> None:
        self.settings = settings
        self.chat = chat
        self.mode = mode(settings)
        self.service: SlackService | None = None
        self.handler: AsyncSlackRequestHandler | None = None  # the HTTP request handler (HTTP mode)
        self.socket: SocketMode | None = None
        self._warm: asyncio.Task[None] | None = None

    def install(self, app: FastAPI) -> None:
        from integrations.slack.routes import router

        app.state.slack = self
        app.include_router(router)

    @contextlib.asynccontextmanager
    async def running(self, db: Database) -> AsyncGenerator[None]:
        await self.start(db)
        try:
            yield
        finally:
            await self.stop()

    async def start(self, db: Database) -> None:
        from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler

        from integrations.slack import web
        from integrations.slack.app import build
        from integrations.slack.service import SlackService

        s = self.settings
        client = web.client(s.slack_bot_token, s.slack_api_base)
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "", "localhost") else s.host
        base = f"http://{'[' + host + ']' if ':' in host else host}:{s.port}"
        chat = self.chat(db)
        self.service = SlackService(db, s, client, base, chat)
        bolt = build(self.service, client, signing_secret=s.slack_signing_secret, http=self.mode == "http")
        self.service.start()
        # The meta agent's first turn imports litellm and the MCP client (seconds): done now,
        # off the event loop, so that first turn does not stall Slack's 3-second acks. Only
        # with a model: without one no turn runs (the thread is told how to configure it).
        if s.model:
            self._warm = asyncio.create_task(asyncio.to_thread(chat.warm))
        if self.mode == "http":
            self.handler = AsyncSlackRequestHandler(bolt)
        else:
            from integrations.slack.socket import SocketMode

            self.socket = SocketMode(bolt, s.slack_app_token, client)
            self.socket.start()
        log.info("Slack started (%s mode)", self.mode)

    async def stop(self) -> None:
        if self._warm is not None:
            with contextlib.suppress(Exception):
                await self._warm
        if self.socket is not None:
            await self.socket.stop()
        if self.service is not None:
            await self.service.stop()
