"""How a tool reaches the control plane, as whom, and how its failures read.

Every tool talks to the REST API through the SDK (`sdk.client`), so the API's own
checks (scopes, validation, the state machine) decide what a caller may do. `Backend` is a
fixed URL and key (stdio, tests); `tools.http` derives both from each MCP request.

A failed call becomes a `ToolError`: the client gets an error result (`is_error`) whose text
says what went wrong and what to do next, never a protocol error.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError

from kernel.statuses import TaskStatus
from sdk.client import ApiError, AsyncControlPlaneClient

__all__ = ["Backend", "Client", "Connection", "current_request", "explain", "remember_request"]

Client = AsyncControlPlaneClient

# The transport's request (a Starlette request over HTTP, None on stdio and in-process) of
# the MCP message being handled: static resources get no `Context`, so they find it here.
_request: ContextVar[Any] = ContextVar("mcp_request", default=None)


async def remember_request(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: make the transport request visible to `current_request()`."""
    token = _request.set(ctx.request)
    try:
        return await call_next(ctx)
    finally:
        _request.reset(token)


def current_request() -> Any:
    return _request.get()


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str | None
    board: str  # base URL of the web board, for links
    # What tasks created through this connection say about where they came from.
    source: str = "mcp"
    requested_by: str | None = None


class Backend:
    """A control plane at `url`, called with `api_key`; links point at `public_url` (or `url`).
    Tasks created through it carry `source` and `requested_by` (the chat's person)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        public_url: str | None = None,
        timeout: float = 30.0,
        *,
        source: str = "mcp",
        requested_by: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key or None
        self.public_url = (public_url or url).rstrip("/")
        self.timeout = timeout
        self.source = source
        self.requested_by = requested_by

    def connection(self) -> Connection:
        """Where and as whom the current request calls the API (fixed here; per request over HTTP)."""
        return Connection(self.url, self.api_key, self.public_url, self.source, self.requested_by)

    def board_link(self, task_id: str) -> str:
        return f"{self.connection().board}/#/tasks/{task_id}"

    @asynccontextmanager
    async def client(self, doing: str = "call the control plane") -> AsyncGenerator[Client]:
        """An SDK client for this request; an `ApiError` inside becomes an explained `ToolError`."""
        conn = self.connection()
        # "" rather than None: the SDK would otherwise fall back to META_AGENT_API_KEY.
        client = AsyncControlPlaneClient(
            url=conn.url,
            api_key=conn.api_key or "",
            timeout=self.timeout,
            source=conn.source,
            requested_by=conn.requested_by,
        )
        try:
            yield client
        except ApiError as exc:
            raise ToolError(explain(exc, doing, conn.url)) from None
        finally:
            await client.aclose()


_NEXT = {
    "task_not_found": "Check the id: list_tasks shows recent tasks and their ids.",
    "agent_not_found": "Call list_agents to see the agents that exist, then use one of their names.",
    "team_not_found": "Call list_agents to see the teams that exist, then use one of their names.",
    "queue_not_found": "Call list_queues to see the queues that exist, or leave `queue` out.",
    "not_waiting_for_input": "Only a task in requires_input takes an answer; get_task shows its status.",
    "queue_required": "Name a queue: list_queues shows them with their live workers.",
    "invalid_status": f"Use one of {', '.join(TaskStatus)}.",
}


def explain(exc: ApiError, doing: str, url: str) -> str:
    """The error text a model reads: what failed, why, and what to do next."""
    if exc.status == 0:
        if exc.code == "timeout":
            return f"Could not {doing}: the control plane at {url} did not answer in time. Try again shortly."
        return (
            f"Could not {doing}: the control plane at {url} is not reachable ({exc.detail}). "
            "Ask the user to start it (`meta-agent serve`) or to point META_AGENT_URL at it."
        )
    if exc.status == 401:
        return (
            f"Could not {doing}: the control plane refused the API key ({exc.detail}). "
            "The user must configure a valid key (META_AGENT_API_KEY, or the Authorization header)."
        )
    if exc.status == 403:
        return (
            f"Could not {doing}: {exc.detail}. This API key may not do that (a viewer key can only read); "
            "ask the user for a key with the operator scope."
        )
    hint = _NEXT.get(exc.code)
    if hint is None and exc.code == "invalid_transition":
        hint = "get_task shows the task's status and what it allows."
    text = f"Could not {doing}: {exc.detail} [{exc.code}]."
    return f"{text} {hint}" if hint else text
