"""Read-only tools and resources about what exists: agents, teams, queues."""

from __future__ import annotations

import json
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from tools.backend import Backend
from tools.models import AgentCatalog, AgentInfo, QueueInfo, QueueList, TeamInfo

__all__ = ["READ_ONLY", "register"]

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)

Query = Annotated[
    str | None,
    Field(
        description="Words to filter names and descriptions by, e.g. 'kubernetes'; omit for all.",
        max_length=200,
    ),
]


async def agent_catalog(backend: Backend, query: str | None = None) -> AgentCatalog:
    """Agents and teams, filtered by `query` (the API filters agents; teams are few)."""
    async with backend.client("list the agents") as c:
        agents = await c.agents.list(q=query or None)
        teams = await c.teams.list()
    words = (query or "").lower().split()
    team_infos = [
        TeamInfo.of(t) for t in teams if all(w in f"{t.name} {t.description}".lower() for w in words)
    ]
    return AgentCatalog(agents=[AgentInfo.of(a) for a in agents], teams=team_infos)


def register(mcp: MCPServer, backend: Backend) -> None:
    @mcp.tool(title="List agents", annotations=READ_ONLY)
    async def list_agents(query: Query = None) -> AgentCatalog:
        """List the agents and teams that can run tasks, with what each is for, its default
        queue and parameters. Call it first to pick one for create_task."""
        return await agent_catalog(backend, query)

    @mcp.tool(title="List worker queues", annotations=READ_ONLY)
    async def list_queues() -> QueueList:
        """List the worker queues with their live workers and pending and running tasks. A
        queue with 0 active_workers runs nothing; one with an agent in cannot_run lacks its
        prerequisites."""
        async with backend.client("list the queues") as c:
            queues = await c.queues.list()
        return QueueList(queues=[QueueInfo.of(q) for q in queues])

    @mcp.resource(
        "agents://catalog",
        name="agent_catalog",
        title="Agent catalog",
        description="Every agent and team, with descriptions, tools, parameters and default queues.",
        mime_type="application/json",
    )
    async def catalog_resource() -> str:
        try:
            data = await agent_catalog(backend)
        except ToolError as exc:
            raise ResourceError(str(exc)) from None
        return json.dumps(data.model_dump(mode="json"), indent=1)
