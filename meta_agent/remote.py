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

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

__all__ = [
    "REQUESTER_HEADER",
    "SOURCE_HEADER",
    "McpFactory",
    "McpUnavailable",
    "http_tools",
    "in_process_tools",
    "pin_queue",
]

SOURCE_HEADER = "X-Meta-Agent-Source"
REQUESTER_HEADER = "X-Meta-Agent-Requested-By"

McpFactory = Callable[[], AbstractAsyncContextManager[Any]]


class McpUnavailable(Exception):
    """The MCP endpoint could not be used: unreachable, refused the key, or not an MCP server."""

    code = "mcp_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _status_problem(status: int) -> str:
    if status == 401:
        return "it refused the API key (HTTP 401); pass one with --api-key or META_AGENT_API_KEY"
    if status == 403:
        return "this API key may not use it (HTTP 403)"
    if status == 404:
        return "there is no MCP endpoint at that address (HTTP 404)"
    return f"it answered HTTP {status}"


def _problem(exc: BaseException, last_status: int | None) -> str | None:
    """What went wrong reaching the endpoint, in words; None when `exc` is not about that.

    The MCP client turns an HTTP error into a generic MCPError ("Server returned an error
    response"), so the status the endpoint last answered with (`last_status`) says which.
    """
    import httpx2
    from mcp.shared.exceptions import MCPError

    if isinstance(exc, BaseExceptionGroup):
        group = cast(BaseExceptionGroup[BaseException], exc)  # isinstance cannot name the members' type
        found = [_problem(e, last_status) for e in group.exceptions]
        return found[0] if found and all(found) else None
    if isinstance(exc, httpx2.HTTPStatusError):
        return _status_problem(exc.response.status_code)
    if isinstance(exc, httpx2.TransportError):
        return f"{type(exc).__name__}: {exc or 'no connection'}"
    if isinstance(exc, MCPError):
        return _status_problem(last_status) if last_status else f"MCP error: {exc}"
    return None


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
    async def connect() -> AsyncGenerator[Any]:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        kw: dict[str, Any] = {}
        if elicit is not None:
            kw["elicitation_callback"] = elicit
        last_error: list[int] = []

        async def remember_errors(response: httpx2.Response) -> None:
            if response.status_code >= 400:
                last_error[:] = [response.status_code]

        try:
            async with httpx2.AsyncClient(
                headers=headers,
                # As the MCP SDK's own client: a followed task's stream may stay quiet for long.
                timeout=httpx2.Timeout(30.0, read=300.0),
                event_hooks={"response": [remember_errors]},
            ) as http:
                async with Client(streamable_http_client(endpoint, http_client=http), **kw) as client:
                    yield client
        except Exception as exc:  # ExceptionGroups from the client's task group included
            problem = _problem(exc, last_error[0] if last_error else None)
            if problem is None:
                raise
            raise McpUnavailable(f"cannot use the MCP endpoint {endpoint}: {problem}") from None

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
    async def connect() -> AsyncGenerator[Any]:
        async with factory() as client:
            yield _PinnedQueue(client, queue)

    return connect
