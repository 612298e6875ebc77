"""A tiny MCP server over stdio for the `llm` runtime's MCP tests: `add` and `whoami`."""

from __future__ import annotations

import logging
import os
import sys

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

from mcp.server.mcpserver import MCPServer  # noqa: E402

server = MCPServer("calc", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def whoami() -> str:
    """Which secrets this server can see (it must see none of the worker's)."""
    return f"api_key={os.environ.get('META_AGENT_API_KEY', 'none')} greeting={os.environ.get('GREETING', 'none')}"


if __name__ == "__main__":
    server.run()
