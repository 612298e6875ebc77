"""How the meta agent reaches its tools: the control plane's `/mcp` over HTTP, or in-process.

    agent = MetaAgent(provider, backend, mcp_client=http_tools(url, key, source="cli", requested_by="alice"))

`MetaAgent` calls its tools through the official `mcp` Client. By default it builds the
tools in-process (`tools.server.build_server`, calling the REST API at --url). `http_tools`
connects instead to a (remote) control plane's MCP endpoint with the Streamable HTTP client
and `Authorization: Bearer <key>`, so the tools run there, as the key's owner.

Source and requester: a task created over MCP is marked `source=mcp` and requested by the
key's name. The meta agent is the CLI (or another surface) acting for a person, so it says so
out of band, in two headers the control plane's MCP endpoint reads (`tools/http.py`):
`X-Meta-Agent-Source` and `X-Meta-Agent-Requested-By`. Headers rather than tool arguments:
the model never sees or sets them, and other MCP clients' tool schemas stay as they are. They
claim nothing a key could not claim already: the REST API takes `source` and `requested_by`
in the body from any caller allowed to create tasks.

`pin_queue` wraps either kind so every `create_task` goes to one queue (`exec --local`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

__all__ = ["REQUESTER_HEADER", "SOURCE_HEADER", "McpFactory", "http_tools", "in_process_tools", "pin_queue"]

SOURCE_HEADER = "X-Meta-Agent-Source"
REQUESTER_HEADER = "X-Meta-Agent-Requested-By"

McpFactory = Callable[[], AbstractAsyncContextManager[Any]]


def mcp_endpoint(url: str) -> str:
    """`url` itself when it already names the endpoint (`.../mcp`), else `{url}/mcp`."""
    url = url.rstrip("/")
    return url if url.endswith("/mcp") else f"{url}/mcp"


def http_tools(
    url: str,
    api_key: str | None,
    *,
    source: str,
    requested_by: str | None,
    elicit: Any = None,
) -> McpFactory:
    """A factory of MCP clients connected to the control plane's `/mcp` at `url` over HTTP."""
    endpoint = mcp_endpoint(url)
    headers = {SOURCE_HEADER: source}
    if requested_by:
        headers[REQUESTER_HEADER] = requested_by
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    @asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        from mcp import Client
        from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

        kw: dict[str, Any] = {}
        if elicit is not None:
            kw["elicitation_callback"] = elicit
        async with create_mcp_http_client(headers=headers) as http:
            async with Client(streamable_http_client(endpoint, http_client=http), **kw) as client:
                yield client

    return connect


def in_process_tools(backend: Any, *, elicit: Any = None) -> McpFactory:
    """The default: our own tools, in this process, over `backend` (what MetaAgent does alone)."""

    def connect() -> AbstractAsyncContextManager[Any]:
        from mcp import Client

        from tools.server import build_server

        kw: dict[str, Any] = {}
        if elicit is not None:
            kw["elicitation_callback"] = elicit
        return Client(build_server(backend), **kw)

    return connect


class _PinnedQueue:
    """An MCP client whose `create_task` calls all go to `queue`, whatever the model chose."""

    def __init__(self, client: Any, queue: str) -> None:
        self._client = client
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, **kw: Any) -> Any:
        if name == "create_task":
            arguments = {**(arguments or {}), "queue": self._queue}
        return await self._client.call_tool(name, arguments, **kw)


def pin_queue(factory: McpFactory, queue: str) -> McpFactory:
    """`factory`'s clients, with every new task created on `queue`."""

    @asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        async with factory() as client:
            yield _PinnedQueue(client, queue)

    return connect
