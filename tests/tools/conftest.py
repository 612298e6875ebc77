"""MCP test harness: a live control plane, an in-process worker, and one way to connect the
official `mcp` Client per transport (in-process, Streamable HTTP at /mcp, stdio subprocess).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from sdk.client import AsyncControlPlaneClient
from tests.support import ROOT, LiveServer
from tools.backend import Backend
from tools.server import build_server
from worker.main import Worker

TRANSPORTS = ["inprocess", "http", "stdio"]
MODES = ["auto", "legacy"]  # auto negotiates 2026-07-28; legacy is the 2025-11-25 handshake
META_AGENT = str(Path(sys.executable).parent / "meta-agent")

GREET = {
    "name": "greet",
    "description": "Greets someone by name",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["python3", "-c", "import sys; print('hello', sys.argv[1])", "{who}"],
    "parameters": {"who": {"required": True, "description": "whom to greet"}},
}
SH = {
    "name": "sh",
    "description": "Runs a bash script",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["bash", "-c", 'eval "$PARAM_SCRIPT"'],
    "parameters": {"script": {"required": True, "description": "bash code"}},
}


def setup_catalog(c: httpx.Client) -> None:
    assert c.post("/worker-queues", json={"name": "q1", "description": "test queue"}).status_code == 201
    for agent in (GREET, SH):
        assert c.post("/agents", json=agent).status_code == 201, agent


@pytest.fixture
def plane(server: LiveServer) -> LiveServer:
    """A live control plane (SQLite and PostgreSQL) with queue q1 and agents greet and sh."""
    with server.client() as c:
        setup_catalog(c)
    return server


@pytest.fixture
def sqlite_plane(server_factory: Any, db_url: str) -> LiveServer:
    """Like `plane`, for tests parametrised `db_url=sqlite` (the transport matrix)."""
    srv: LiveServer = server_factory(db_url)
    with srv.client() as c:
        setup_catalog(c)
    return srv


@asynccontextmanager
async def running_worker(url: str, workspace: Path, api_key: str | None = None) -> AsyncIterator[Worker]:
    """An in-process worker on q1 against the live server, stopped cleanly at the end."""
    async with AsyncControlPlaneClient(url, api_key=api_key or "", timeout=10) as client:
        # A short long-poll: the server holds an abandoned claim until it times out, and its
        # shutdown waits for it.
        worker = Worker(client, "q1", workspace_root=workspace, heartbeat_interval=0.5, claim_wait=1)
        stop = asyncio.Event()
        run = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(run, 20)


def stdio_params(url: str, api_key: str | None, home: Path, **env: str) -> StdioServerParameters:
    variables = {"META_AGENT_URL": url, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), **env}
    if api_key:
        variables["META_AGENT_API_KEY"] = api_key
    return StdioServerParameters(command=META_AGENT, args=["mcp"], env=variables, cwd=ROOT)


Connect = Callable[..., Any]


@pytest.fixture
def connect(tmp_path: Path) -> Connect:
    """`connect(transport, url, mode=..., api_key=..., **client_kw)`: an entered MCP Client."""

    @asynccontextmanager
    async def open_client(
        transport: str, url: str, *, mode: str = "auto", api_key: str | None = None, **kw: Any
    ) -> AsyncIterator[Client]:
        if transport == "inprocess":
            async with Client(build_server(Backend(url, api_key)), mode=mode, **kw) as c:  # type: ignore[arg-type]
                yield c
        elif transport == "http":
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
                target = streamable_http_client(f"{url}/mcp", http_client=http)
                async with Client(target, mode=mode, **kw) as c:  # type: ignore[arg-type]
                    yield c
        else:
            params = stdio_params(url, api_key, tmp_path)
            async with Client(params, mode=mode, read_timeout_seconds=60, **kw) as c:  # type: ignore[arg-type]
                yield c

    return open_client
