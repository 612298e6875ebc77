"""The client resource of agent prerequisites: `c.prerequisites.check("deployer")`.

Kept beside sdk/resources.py, whose resources it is written like (sdk.prereqs: the models).
"""

from __future__ import annotations

from typing import TypeVar

from sdk.prereqs import AgentCheckOut
from sdk.resources import Call, _Resource, endpoint  # pyright: ignore[reportPrivateUsage]
from sdk.transport import API, seg

__all__ = ["Prerequisites"]

M = TypeVar("M")


class Prerequisites(_Resource[M]):
    """`GET /agents/{key}/check`: which live workers, per queue, can run an agent."""

    @endpoint
    def check(self, agent: str) -> Call[AgentCheckOut]:
        return Call("GET", f"{API}/agents/{seg(agent)}/check", AgentCheckOut.model_validate)
