"""The MCP server over Streamable HTTP, mounted in the control plane at exactly `/mcp`.

    mcp_http = McpHttp(settings, verify=lookup, is_open=open_check)   # lookup: token -> caller
    mcp_http.install(app)                   # routes /mcp and its OAuth resource metadata
    async with mcp_http.run(): ...          # in the app's lifespan (the session manager)

Auth: the bearer token of each MCP request must be one of the control plane's API keys
(checked against the store, like the REST API does); without one the answer is 401 with
`WWW-Authenticate: Bearer ..., resource_metadata=".../.well-known/oauth-protected-resource/mcp"`.
On an open loopback server (no keys exist) requests without a token pass, as on the API.

The tools then call the REST API over loopback with the caller's own key, so the API's
scope checks decide what an MCP caller may do (a viewer key lists but cannot create).
DNS-rebinding protection is the control plane's `HostGuard`, in front of every route.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kernel.settings import Settings
from tools.backend import Backend, Connection, current_request
from tools.server import build_server

__all__ = ["MCP_PATH", "ApiKeyVerifier", "HttpBackend", "McpHttp", "stateless", "transport_security"]

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
# Set by the meta agent over HTTP (meta_agent/remote.py): the task's source and requester.
SOURCE_HEADER = "x-meta-agent-source"
REQUESTER_HEADER = "x-meta-agent-requested-by"


class Caller(Protocol):
    """Who an API key is (the store's `Principal`, seen from here without importing it)."""

    @property
    def name(self) -> str: ...
    @property
    def scopes(self) -> frozenset[str]: ...
    @property
    def key_id(self) -> str | None: ...


# The key check itself: handed in by the entry point (cli/compose.py, on `store.auth`), so
# the MCP server never reaches the database itself.
KeyLookup = Callable[[str], Awaitable[Caller | None]]


class ApiKeyVerifier(TokenVerifier):
    """Bearer tokens are the control plane's API keys, checked by the rule the REST API uses
    (`lookup`): unknown, revoked or mistyped ones fail. The SDK's middleware has already
    read the token from the `Authorization` header."""

    def __init__(self, lookup: KeyLookup) -> None:
        self._lookup = lookup

    async def verify_token(self, token: str) -> AccessToken | None:
        # Shielded: the MCP transport cancels a request's task when its client goes away,
        # and a query cut off mid-way strands its pooled connection.
        caller = await asyncio.shield(self._lookup(token))
        if caller is None:
            return None
        # Sorted: the order the key's row keeps its scopes in.
        return AccessToken(
            token=token, client_id=caller.name, scopes=sorted(caller.scopes), subject=caller.key_id
        )


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def base_url(settings: Settings) -> str:
    """This server's own address, as a client on this machine reaches it."""
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    return f"http://{_url_host(host)}:{settings.port}"


class HttpBackend(Backend):
    """Tools call the API over loopback (where this server listens) with the caller's key."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(base_url(settings), public_url=settings.public_url)
        self._public = settings.public_url

    def connection(self) -> Connection:
        request = current_request()
        if request is None:
            return super().connection()
        user = request.scope.get("user")
        key = user.access_token.token if isinstance(user, AuthenticatedUser) else None
        url = self.url
        server = request.scope.get("server")
        if server and server[1]:
            host = "127.0.0.1" if server[0] in WILDCARD_HOSTS else server[0]
            url = f"http://{_url_host(host)}:{server[1]}"
        board = (self._public or str(request.base_url)).rstrip("/")
        # A surface acting for a person (the CLI's meta agent) names both; the REST API
        # validates the source, and takes a requester from any caller that may create tasks.
        source = request.headers.get(SOURCE_HEADER, "").strip().lower() or "mcp"
        requested_by = request.headers.get(REQUESTER_HEADER, "").strip()[:200] or None
        return Connection(url, key, board, source=source, requested_by=requested_by)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """The SDK's own Host/Origin check is off: one rule for every route, /mcp included.

    The control plane's `HostGuard` (board_api/hostguard.py) stands in front of the whole app,
    /mcp too: a foreign Host gets 421 and a cross-site POST 403 there, with the names of
    `META_AGENT_ALLOWED_HOSTS` and `META_AGENT_PUBLIC_URL`, which the SDK's list could not
    express (wildcard binds, `*.domain`). The SDK still checks a POST's Content-Type.
    """
    del settings  # the rule is built from the same settings, in front of this app
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def stateless(settings: Settings) -> bool:
    """Whether `/mcp` keeps no sessions in this process's memory (`META_AGENT_MCP_STATELESS`).

    2026-07-28 clients never have a session: every request stands alone. 2025-11-25 clients
    (most IDE assistants today) get an `Mcp-Session-Id` that only the replica which created it
    knows, so behind a load balancer without sticky routing their next request could land
    where the session does not exist. Stateless, any replica answers any request; what those
    clients lose is the back-channel for server-to-client requests, so `stream_task` returns
    a question for the assistant to ask instead of asking through the client's form.

    Default: stateless on PostgreSQL (the scale-out store: replicas behind a load balancer),
    sessions on SQLite (one process per database file, where a session cannot go astray).
    """
    if settings.mcp_stateless is not None:
        return settings.mcp_stateless
    return make_url(settings.database_url).get_backend_name() != "sqlite"


class McpHttp:
    """The `/mcp` endpoint of the control plane, with its session manager."""

    def __init__(
        self, settings: Settings, *, verify: KeyLookup, is_open: Callable[[], Awaitable[bool]]
    ) -> None:
        resource = f"{(settings.public_url or base_url(settings)).rstrip('/')}{MCP_PATH}"
        self.server: MCPServer = build_server(
            HttpBackend(settings),
            token_verifier=ApiKeyVerifier(verify),
            # No authorization server of our own: clients send an API key as the bearer token.
            auth=AuthSettings(
                issuer_url=AnyHttpUrl(resource.removesuffix(MCP_PATH)),
                resource_server_url=AnyHttpUrl(resource),
                validate_token_resource=False,
            ),
            state_keys=settings.mcp_state_keys or None,
            with_schedules=True,
        )
        # Streamed (SSE) replies always: progress notifications travel on the response of
        # the request they belong to, stateless or not.
        self.stateless = stateless(settings)
        self._guarded = self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=transport_security(settings),
            stateless_http=self.stateless,
        )
        self._is_open = is_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == MCP_PATH and not _has_auth(scope):
            if await self._is_open():
                await self.server.session_manager.handle_request(scope, receive, send)
                return
        await self._guarded(scope, receive, send)

    def install(self, app: Starlette) -> None:
        """Add `/mcp` (exactly: no redirect to `/mcp/`) and the resource metadata to `app`."""
        endpoint: ASGIApp = self
        app.router.routes.append(Route(MCP_PATH, endpoint=endpoint))
        app.router.routes.append(Route(METADATA_PATH, endpoint=endpoint))

    def run(self) -> AbstractAsyncContextManager[None]:
        """The session manager's task group; enter it in the app's lifespan, once."""
        return self.server.session_manager.run()


def _has_auth(scope: Scope) -> bool:
    return any(name == b"authorization" for name, _ in scope.get("headers", ()))
