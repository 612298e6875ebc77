"""The host side of MCP Apps for the browser tests: a page (host.html) and its MCP connection.

A real host renders a view in a sandboxed iframe and answers the view's JSON-RPC by calling
its MCP server. Here the page does the postMessage half in Chromium, and `/rpc` on this small
server does the MCP half: each call goes through the official `mcp` Client, which declares
the Apps extension, to the control plane's real `/mcp` endpoint over Streamable HTTP.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import uvicorn
from mcp import Client
from mcp.client.extension import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

from tests.support import free_port, wait_for
from tools.apps import APP_MIME_TYPE, EXTENSION_ID

HOST_PAGE = Path(__file__).with_name("host.html")


def apps_client(mcp_url: str, http: httpx2.AsyncClient) -> Client:
    """An official MCP client that declares MCP Apps, as a host that renders views does."""
    return Client(
        streamable_http_client(mcp_url, http_client=http),
        extensions=[advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})],
    )


class HostBridge:
    """host.html plus `/rpc` (tools/list, tools/call, resources/read), on its own port."""

    def __init__(self, plane_url: str, api_key: str | None = None) -> None:
        self.mcp_url = f"{plane_url}/mcp"
        # The host's connection is made with one API key: its scope bounds what a view can do.
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = f"http://127.0.0.1:{free_port()}"
        # What the views asked the server for: (method, tool name or resource uri).
        self.calls: list[tuple[str, str]] = []
        self.keys: dict[str, str] = {}  # keys the test itself may use on the plane
        app = Starlette(routes=[Route("/host.html", self._page), Route("/rpc", self._rpc, methods=["POST"])])
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def start(self) -> None:
        self.thread.start()
        wait_for(lambda: self.server.started, 15, "the host bridge to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def host_url(self, tool: str, arguments: dict[str, Any]) -> str:
        """The host page, about to call `tool` with `arguments` and render its view."""
        return f"{self.url}/host.html?{urlencode({'tool': tool, 'args': json.dumps(arguments)})}"

    def called(self, method: str, name: str) -> bool:
        return (method, name) in self.calls

    async def _page(self, request: Request) -> FileResponse:
        return FileResponse(HOST_PAGE, media_type="text/html")

    async def _rpc(self, request: Request) -> JSONResponse:
        body = await request.json()
        method, params = body["method"], body.get("params") or {}
        self.calls.append((method, str(params.get("name") or params.get("uri") or "")))
        result: Any = None
        failure: str | None = None
        try:
            async with (
                httpx2.AsyncClient(timeout=60, headers=self.headers) as http,
                apps_client(self.mcp_url, http) as c,
            ):
                result = await self._forward(c, method, params)
        except* MCPError as group:
            failure = str(group.exceptions[0])
        if failure is not None:
            return JSONResponse({"error": {"code": -32603, "message": failure}})
        if result is None:
            return JSONResponse({"error": {"code": -32601, "message": f"not forwarded: {method}"}})
        return JSONResponse({"result": result.model_dump(by_alias=True, mode="json", exclude_none=True)})

    async def _forward(self, c: Client, method: str, params: dict[str, Any]) -> Any:
        # Exactly the requests a view may make through its host (and tools/list, which the
        # host itself makes to find the tool's view).
        if method == "tools/list":
            return await c.list_tools()
        if method == "tools/call":
            return await c.call_tool(params["name"], params.get("arguments") or {})
        if method == "resources/read":
            return await c.read_resource(params["uri"])
        return None
