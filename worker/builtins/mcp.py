"""MCP servers as tools: each server an agent lists (`agent["mcp_servers"]`) lends its tools.

    {"name": "k8s", "command": ["kubectl-mcp", "--read-only"], "env": {"KUBECONFIG": "..."}}   stdio
    {"name": "docs", "url": "https://mcp.example.com/mcp"}                                    Streamable HTTP

A server's tool `t` becomes `<name>__<t>` for the model (and for the policy's
`allowed_tools` / `require_approval`). Servers are connected through the official `mcp`
client for the length of one task run; a stdio server gets the worker's filtered
environment plus its own `env`, never the worker's secrets.
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

from worker.builtins.base import Tool, ToolEnv, ToolError
from worker.builtins.shell import clip
from worker.process import base_environment
from worker.runtime import TaskFailed
from worker.shapes import as_list

if TYPE_CHECKING:  # mcp loads only when an agent lists a server
    from mcp import Client, StdioServerParameters
    from mcp.types import Tool as RemoteTool

__all__ = ["McpTool", "connect_mcp_servers"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,30}$")


class McpTool:
    """One tool of a connected MCP server."""

    def __init__(self, server: str, client: Client, tool: RemoteTool) -> None:
        self.name = f"{server}__{tool.name}"[:64]
        self.remote_name = tool.name
        self.description = (tool.description or f"{tool.name} (MCP server {server})")[:1024]
        self.parameters: dict[str, Any] = dict(tool.input_schema or {"type": "object", "properties": {}})
        self.parameters.setdefault("type", "object")
        self.parameters.setdefault("properties", {})
        self._client = client

    async def run(self, args: dict[str, Any], env: ToolEnv) -> str:
        result = await self._client.call_tool(self.remote_name, args)
        parts: list[str] = []
        for item in result.content or ():
            text = getattr(item, "text", None)
            parts.append(text if isinstance(text, str) else f"[{getattr(item, 'type', 'content')}]")
        text = "\n".join(parts)
        if not text and result.structured_content is not None:
            text = str(result.structured_content)
        if result.is_error:
            raise ToolError(clip(text or "the MCP tool failed"))
        return clip(text)


def _target(spec: dict[str, Any]) -> str | StdioServerParameters:
    from mcp import StdioServerParameters

    if spec.get("url"):
        return str(spec["url"])
    raw = spec.get("command")
    command = [raw] if isinstance(raw, str) else as_list(raw)
    if not command:
        raise TaskFailed(
            "invalid_mcp_server", f"MCP server {spec.get('name')!r} needs a `command` (list) or a `url`"
        )
    env = base_environment()
    extra: dict[str, Any] = spec.get("env") or {}
    env.update({str(k): str(v) for k, v in extra.items()})
    return StdioServerParameters(command=str(command[0]), args=[str(a) for a in command[1:]], env=env)


async def connect_mcp_servers(specs: list[dict[str, Any]], stack: AsyncExitStack) -> dict[str, Tool]:
    """Connect every server (closed with `stack`) and return their tools by name."""
    if not specs:
        return {}
    from mcp import Client

    tools: dict[str, Tool] = {}
    for spec in specs:
        name = str(spec.get("name") or "")
        if not _NAME.match(name):
            raise TaskFailed(
                "invalid_mcp_server", f"MCP server name {name!r} must be 1-30 letters, digits, _ or -"
            )
        try:
            client = await stack.enter_async_context(Client(_target(spec), read_timeout_seconds=300))
            listed = (await client.list_tools()).tools
        except TaskFailed:
            raise
        except Exception as exc:  # a server that cannot start or answer: say which, with why
            raise TaskFailed(
                "mcp_unavailable", f"MCP server {name!r} is not available: {_reason(exc)}"
            ) from exc
        for tool in listed:
            mcp_tool = McpTool(name, client, tool)
            tools[mcp_tool.name] = mcp_tool
    return tools


def _first(exc: BaseException) -> BaseException | None:
    """The first exception inside `exc` when it is a group."""
    if not isinstance(exc, BaseExceptionGroup):
        return None
    # isinstance cannot tell the checker what a group holds: exceptions, by definition.
    inner = cast("BaseExceptionGroup[BaseException]", exc).exceptions
    return inner[0] if inner else None


def _reason(exc: BaseException) -> str:
    while (inner := _first(exc)) is not None:
        exc = inner
    return f"{type(exc).__name__}: {exc}"[:300]
