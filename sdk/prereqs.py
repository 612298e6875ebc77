"""Wire models of agent prerequisites (see store/prereqs.py and the README's
"Prerequisites" section): what an agent requires, what a worker has, who can run what."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["AgentCheckOut", "Capabilities", "QueueFit", "Requires"]

# An executable's file name (no directory), an environment variable's, an MCP server's.
BinName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.+-]+$")]
EnvName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
SecretName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Requires(BaseModel):
    """What a worker must have to run the agent; a task waits for one that has it all."""

    model_config = ConfigDict(extra="forbid")
    bins: list[BinName] = Field(default=[], max_length=32, description="Executables on the worker's PATH")
    env: list[EnvName] = Field(default=[], max_length=32, description="Environment variables it must have")
    secrets: list[SecretName] = Field(
        default=[], max_length=32, description="Secrets it must hold (an `env` secret: its variable)"
    )
    mcp: list[Label] = Field(default=[], max_length=16, description="MCP servers it must reach, by name")
    environment: Label | None = Field(default=None, description="The worker's (or its queue's) environment")


class Capabilities(BaseModel):
    """What a worker has, sent with a claim when it changes (`digest` names it after)."""

    model_config = ConfigDict(extra="forbid")
    digest: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    bins: list[BinName] = Field(default=[], max_length=20_000)
    env: list[EnvName] = Field(default=[], max_length=5_000)
    mcp: list[Label] = Field(default=[], max_length=200)
    environment: Label | None = None


class QueueFit(BaseModel):
    """Whether a queue's live workers can run an agent that requires something."""

    agent: str
    live_workers: int
    workers: list[str] = Field(description="Live workers of the queue that can run it")
    missing: list[str] = Field(description="What the closest live worker lacks (empty when one can)")


class AgentCheckOut(BaseModel):
    """`GET /agents/{key}/check`: per queue with live workers, who can run the agent."""

    agent: str
    requires: Requires
    needs: list[str] = Field(description="The requirements as tokens (`bin:kubectl`, `env:X`, ...)")
    queues: dict[str, QueueFit]
    runnable: bool = Field(description="Some live worker can run it")
