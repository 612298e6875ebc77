"""Slack: conversations with the meta agent in threads, and the relay of task progress,
questions and results back to them. See README "Slack" and integrations/slack/manifest.yaml.

The control plane calls `install(app, settings)` once; it returns None (and adds nothing)
unless Slack is configured, else a `SlackIntegration` whose `start(db)`/`stop()` the app's
lifespan calls. HTTP mode serves `POST /slack/events`; Socket Mode connects out with the
app token (no public URL needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("integrations.slack")

__all__ = ["SlackIntegration", "configured", "install", "mode"]


def mode(settings: Any) -> str:
    chosen = (settings.slack_mode or "").strip().lower()
    if chosen in ("http", "socket"):
        return chosen
    return "socket" if settings.slack_app_token else "http"


def configured(settings: Any) -> bool:
    if not settings.slack_bot_token:
        return False
    if mode(settings) == "socket":
        return bool(settings.slack_app_token)
    return bool(settings.slack_signing_secret)


def install(app: Any, settings: Any) -> SlackIntegration | None:
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
    from integrations.slack.routes import router

    integration = SlackIntegration(settings)
    app.state.slack = integration
    app.include_router(router)
    return integration


class SlackIntegration:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.mode = mode(settings)
        self.service: Any = None
        self.handler: Any = None  # the HTTP request handler (HTTP mode)
        self.socket: Any = None
        self._warm: asyncio.Task[None] | None = None

    async def start(self, db: Any) -> None:
        from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler

        from integrations.slack import web
        from integrations.slack.app import build
        from integrations.slack.service import SlackService

        s = self.settings
        client = web.client(s.slack_bot_token, s.slack_api_base)
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "", "localhost") else s.host
        base = f"http://{'[' + host + ']' if ':' in host else host}:{s.port}"
        self.service = SlackService(db, s, client, base)
        bolt = build(self.service, client, signing_secret=s.slack_signing_secret, http=self.mode == "http")
        self.service.start()
        # The meta agent's first turn imports litellm and the MCP client (seconds): done now,
        # off the event loop, so that first turn does not stall Slack's 3-second acks. Only
        # with a model: without one no turn runs (the thread is told how to configure it).
        if s.model:
            self._warm = asyncio.create_task(asyncio.to_thread(_warm_imports))
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


def _warm_imports() -> None:
    import mcp  # noqa: F401

    import meta_agent.agent  # noqa: F401
    from meta_agent.llm import load_litellm

    load_litellm()  # with the bundled cost map: a bare `import litellm` fetches it over the network
