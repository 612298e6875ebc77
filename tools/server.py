"""The MCP server: every tool and resource, on top of the control plane's REST API.

    from tools.backend import Backend
    from tools.server import build_server
    mcp = build_server(Backend("http://127.0.0.1:8080", api_key="ma_..."))
    mcp.run()                                  # stdio; `tools.http` mounts it at /mcp

The same server object serves every transport and both protocol eras (2026-07-28 and the
handshake era up to 2025-11-25); only the `Backend` differs.
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.request_state import RequestStateSecurity

from kernel import __version__
from tools import catalog, schedules, stream, tasks
from tools.apps import TaskApps, hide_from_plain_clients
from tools.backend import Backend, remember_request

__all__ = ["INSTRUCTIONS", "build_server"]

INSTRUCTIONS = """\
meta-agent runs durable tasks: an agent (an LLM with tools, or a command) works on a worker
and everything it does is logged. To get something done for the user:
1. list_agents to find the agent (or team) whose description fits the request;
2. create_task with that agent and the request as `prompt` (and any parameters);
3. stream_task to follow it: it reports progress and returns when the task ends, when it
   needs an answer from the user, or at its timeout (then call it again with `after`);
4. when a task needs input, ask the user the question and send their reply with
   respond_to_task (never invent an answer), then stream_task again.
Share the task's board_url so the user can watch it live. get_task, list_tasks,
cancel_task and retry_task manage tasks; list_queues shows where workers are live."""


def state_security(keys: list[str] | None) -> RequestStateSecurity | None:
    """Shared sealing keys (rotation ring: the first seals, all unseal), or None for the
    SDK's per-process key."""
    return RequestStateSecurity(keys=keys) if keys else None


def build_server(
    backend: Backend,
    *,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    log_level: Any = "WARNING",
    state_keys: list[str] | None = None,
    with_schedules: bool = False,
) -> MCPServer:
    """An MCP server whose tools call the control plane as `backend` says.

    `state_keys` seal the state an elicitation round trip carries (2026-07-28); replicas
    behind one load balancer need the same keys, or a retry landing on another replica is
    refused. Without them each process uses its own key. `with_schedules` adds the schedule
    tools (tools/schedules.py): for assistants (stdio, /mcp), not the meta agent.
    """
    mcp: MCPServer = MCPServer(
        "meta-agent",
        title="meta-agent control plane",
        instructions=INSTRUCTIONS,
        version=__version__,
        token_verifier=token_verifier,
        auth=auth,
        log_level=log_level,
        # MCP Apps (tools/apps.py): the task card and board views, for hosts that declare them.
        middleware=[remember_request, hide_from_plain_clients],
        extensions=[TaskApps()],
        request_state_security=state_security(state_keys),
    )
    catalog.register(mcp, backend)
    tasks.register(mcp, backend)
    stream.register(mcp, backend)
    if with_schedules:
        schedules.register(mcp, backend)
    return mcp
