"""The whole control plane, assembled: the REST app (`board_api`) with the MCP endpoint
(`tools`), Slack (`integrations`) and the meta agent behind `/chat` and Slack threads.

This is the one place that knows every floor; each part below it is handed what it needs
(the chat port, the plugins) instead of importing the parts above it.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from board_api.app import create_app as create_rest_app
from board_api.plugins import Plugin
from board_api.state import state_of
from integrations.a2a import A2AEndpoint
from integrations.slack import plugin as slack_plugin
from kernel.chat import Chat
from kernel.settings import Settings
from meta_agent.conversation import ConversationChat
from store.auth import key_principal
from store.db import Database

__all__ = ["create_app"]


class McpEndpoint:
    """`/mcp` (Streamable HTTP, API keys as bearer tokens) inside the control plane."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def install(self, app: FastAPI) -> None:
        # Imported here: the MCP SDK takes ~0.6 s to import, and only the server needs it.
        from tools.http import McpHttp

        state = state_of(app)

        async def is_open() -> bool:  # open mode, and still no key: /mcp answers without one
            return await state.gate.is_open(state.db)

        self.http = McpHttp(
            self.settings, verify=lambda token: key_principal(state.db, token), is_open=is_open
        )
        self.http.install(app)  # exactly /mcp, plus its OAuth protected-resource metadata

    def running(self, db: Database) -> AbstractAsyncContextManager[None]:
        return self.http.run()  # the session manager's task group


class A2aEndpoint:
    """A2A (`POST /a2a`, the agent card), with the same key rule as `/mcp`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def install(self, app: FastAPI) -> None:
        state = state_of(app)

        async def is_open() -> bool:
            return await state.gate.is_open(state.db)

        self.a2a = A2AEndpoint(
            self.settings, verify=lambda token: key_principal(state.db, token), is_open=is_open
        )
        self.a2a.install(app)

    def running(self, db: Database) -> AbstractAsyncContextManager[None]:
        return self.a2a.running(db)


def create_app(
    settings: Settings | None = None, *, db: Database | None = None, worker_token: str | None = None
) -> FastAPI:
    settings = settings or Settings()

    def chat(database: Database) -> Chat:
        return ConversationChat(database, settings)

    plugins: list[Plugin] = [McpEndpoint(settings), A2aEndpoint(settings)]
    slack = slack_plugin(settings, chat)  # POST /slack/events, only when Slack is configured
    if slack is not None:
        plugins.insert(0, slack)  # started before /mcp, stopped after it
    return create_rest_app(settings, db=db, worker_token=worker_token, plugins=plugins, chat=chat)
