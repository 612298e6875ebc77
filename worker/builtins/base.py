"""What every built-in tool is made of: the `Tool` shape, its `ToolEnv`, and `ToolError`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.runtime import TaskContext

__all__ = ["Prepare", "Tool", "ToolEnv", "ToolError", "schema"]


class ToolError(Exception):
    """A tool call failed in a way the model is told about (not a task failure)."""


@dataclass
class ToolEnv:
    """What a running tool call may use: the task, its call id, a way to stream output."""

    ctx: TaskContext
    call_id: str
    output: Callable[[str], None]
    # The call's own record in the checkpoint: a `resumable` tool keeps what it needs to
    # pick up again after a crash or a question (e.g. the child task it created).
    state: dict[str, Any] = field(default_factory=dict[str, Any])


class Tool(Protocol):
    name: str
    description: str
    parameters: dict[str, Any]

    async def run(self, args: dict[str, Any], env: ToolEnv) -> str: ...


# The optional `prepare(args, env)` of a resumable tool (looked up with getattr: most tools
# have none, and the Tool protocol stays what every tool has).
Prepare = Callable[[dict[str, Any], ToolEnv], Coroutine[Any, Any, None]]


def schema(tool: Tool) -> dict[str, Any]:
    """The tool in the OpenAI `tools` format that litellm passes on to every provider."""
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }
