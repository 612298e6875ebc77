"""The MCP tools: the capability surface every assistant (ours included) uses.

`tools.server.build_server(backend)` builds the MCP server; `tools.http` mounts it in the
control plane at `/mcp`; `meta-agent mcp` (cli/mcp.py) serves it over stdio.
Importing this package imports nothing: the MCP SDK loads only where a server is built.
"""
